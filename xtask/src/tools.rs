//! `cargo xtask tools`: installs the pinned npm tools from the committed `tools/package.json`
//! and `tools/package-lock.json` into the ignored `.tools/` folder, and the pinned Python
//! packages of `tools/requirements.txt` (the `openai` client) into `.tools/venv`.
//!
//! The install is idempotent: a stamp holding the lock file's contents says what is installed,
//! so a second run with an unchanged lock does nothing and takes milliseconds.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the tools live, relative to the workspace root.
pub(crate) const TOOLS_DIR: &str = ".tools";

/// What an install provides.
pub(crate) struct Tools {
    /// The `anvil` binary.
    pub(crate) anvil: PathBuf,
    /// The `node_modules` folder (solc-js and OpenZeppelin sources live there).
    #[allow(dead_code)]
    pub(crate) node_modules: PathBuf,
    /// The virtualenv's Python, with the `openai` package.
    #[allow(dead_code)]
    pub(crate) python: PathBuf,
}

/// Installs the tools unless the installed set already matches the committed lock file.
pub(crate) fn install(root: &Path) -> Result<Tools> {
    let src = root.join("tools");
    let dst = root.join(TOOLS_DIR);
    let lock = fs::read_to_string(src.join("package-lock.json"))
        .context("reading tools/package-lock.json")?;
    let stamp = dst.join(".installed-lock.json");
    let tools = Tools {
        anvil: dst.join("node_modules/.bin/anvil"),
        node_modules: dst.join("node_modules"),
        python: python(root)?,
    };
    if fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) && tools.anvil.exists() {
        return Ok(tools);
    }
    if which("npm").is_none() {
        bail!("npm is needed to install the developer tools: install Node.js 20+ and npm");
    }
    fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
    for file in ["package.json", "package-lock.json"] {
        fs::copy(src.join(file), dst.join(file)).with_context(|| format!("copying {file}"))?;
    }
    crate::run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dst),
    )?;
    if !tools.anvil.exists() {
        bail!("npm ci finished but {} is missing", tools.anvil.display());
    }
    fs::write(&stamp, lock).context("writing the tools stamp")?;
    eprintln!("tools installed in {}", dst.display());
    Ok(tools)
}

/// Creates `.tools/venv` and installs `tools/requirements.txt` into it, unless the stamp says
/// that list is installed; returns the virtualenv's Python.
fn python(root: &Path) -> Result<PathBuf> {
    let requirements = root.join("tools/requirements.txt");
    let wanted = fs::read_to_string(&requirements).context("reading tools/requirements.txt")?;
    let venv = root.join(TOOLS_DIR).join("venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(".installed-requirements.txt");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && python.exists() {
        return Ok(python);
    }
    let Some(system) = which("python3") else {
        bail!("python3 (with its venv module) is needed to install the openai client");
    };
    crate::run(
        Command::new(system)
            .arg("-m")
            .arg("venv")
            .arg("--clear")
            .arg(&venv),
    )
    .context("creating .tools/venv (on Debian and Ubuntu: apt install python3-venv)")?;
    let pip = |args: &[&str]| -> Result<()> {
        crate::run(
            Command::new(&python)
                .args(["-m", "pip", "--disable-pip-version-check", "--quiet"])
                .args(args),
        )
    };
    let list = requirements
        .to_str()
        .context("the requirements path is not UTF-8")?;
    pip(&["install", "--no-deps", "--requirement", list])?;
    pip(&["check"])?;
    fs::write(&stamp, wanted).context("writing the venv stamp")?;
    eprintln!("python packages installed in {}", venv.display());
    Ok(python)
}

/// Finds an executable on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
