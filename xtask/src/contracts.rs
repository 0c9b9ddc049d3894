//! `cargo xtask contracts`: compiles every `contracts/*.sol` with the pinned solc-js (through
//! `node tools/compile.js`) and writes one JSON per contract (ABI, bytecode, deployed bytecode)
//! into the committed `contracts-abi/` folder.
//!
//! The output is deterministic (relative source names, no metadata hash, sorted keys), so
//! [`check_fresh`] can require the committed artifacts to equal a fresh compile byte for byte.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Where the artifacts are committed, relative to the workspace root.
pub(crate) const ABI_DIR: &str = "contracts-abi";

/// Compiles the contracts into `contracts-abi/`, replacing the JSON files there.
pub(crate) fn build(root: &Path) -> Result<()> {
    let tmp = scratch_dir(root, "build")?;
    let result = compile_into(root, &tmp).and_then(|()| {
        let dst = root.join(ABI_DIR);
        fs::create_dir_all(&dst).with_context(|| format!("creating {}", dst.display()))?;
        let fresh = read_artifacts(&tmp)?;
        for name in read_artifacts(&dst)?.keys() {
            if !fresh.contains_key(name) {
                fs::remove_file(dst.join(name))
                    .with_context(|| format!("removing stale {name}"))?;
            }
        }
        for (name, bytes) in &fresh {
            fs::write(dst.join(name), bytes).with_context(|| format!("writing {name}"))?;
        }
        eprintln!("contracts: {} artifacts in {ABI_DIR}/", fresh.len());
        Ok(())
    });
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Compiles into a temporary folder and fails if the result differs from `contracts-abi/`.
pub(crate) fn check_fresh(root: &Path) -> Result<()> {
    let tmp = scratch_dir(root, "check")?;
    let result = compile_into(root, &tmp).and_then(|()| {
        let fresh = read_artifacts(&tmp)?;
        let committed = read_artifacts(&root.join(ABI_DIR))?;
        let stale: Vec<&String> = fresh
            .keys()
            .chain(committed.keys())
            .filter(|name| fresh.get(*name) != committed.get(*name))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !stale.is_empty() {
            let list: Vec<&str> = stale.iter().map(|s| s.as_str()).collect();
            bail!(
                "{ABI_DIR}/ is out of date ({}): run `cargo xtask contracts` and commit the result",
                list.join(", ")
            );
        }
        eprintln!("contracts: {ABI_DIR}/ matches a fresh compile");
        Ok(())
    });
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Runs `node tools/compile.js <root> <out>`.
fn compile_into(root: &Path, out: &Path) -> Result<()> {
    let solc = root.join(crate::tools::TOOLS_DIR).join("node_modules/solc");
    if !solc.exists() {
        bail!(
            "solc-js is missing from {}: run `cargo xtask tools`",
            solc.display()
        );
    }
    let output = Command::new("node")
        .arg(root.join("tools/compile.js"))
        .arg(root)
        .arg(out)
        .current_dir(root)
        .output()
        .context("running node (install Node.js 20+)")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("compiling the contracts failed:\n{stderr}");
    }
    if !stderr.trim().is_empty() {
        eprintln!("{stderr}");
    }
    Ok(())
}

/// The `*.json` files of `dir` by file name (an absent folder has none).
fn read_artifacts(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut artifacts = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(artifacts),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("artifact with a non-UTF-8 name")?
                .to_owned();
            let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            artifacts.insert(name, bytes);
        }
    }
    Ok(artifacts)
}

/// A fresh, empty scratch folder under `target/` (never the committed tree).
fn scratch_dir(root: &Path, what: &str) -> Result<PathBuf> {
    let dir = root
        .join("target")
        .join("xtask-contracts")
        .join(format!("{what}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_artifacts_match_a_fresh_compile() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check_fresh(root).unwrap();
    }

    #[test]
    fn a_changed_artifact_is_reported() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = scratch_dir(root, "test-read").unwrap();
        fs::write(dir.join("A.json"), b"{}\n").unwrap();
        fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let found = read_artifacts(&dir).unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["A.json"]);
        assert!(read_artifacts(&dir.join("missing")).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
