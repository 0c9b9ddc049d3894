//! `cargo xtask fuzz [seconds] [target...]`: a short cargo-fuzz run of every target in `fuzz/`
//! (the wire codec and the stream frame decoder). Needs the nightly toolchain; installs
//! cargo-fuzz when missing. Not part of `ci`: fuzzing is slow and not deterministic.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run;

/// Seconds per target when none are given.
const DEFAULT_SECONDS: u64 = 60;

/// The toolchain cargo-fuzz builds with (sanitizers need nightly).
const TOOLCHAIN: &str = "+nightly";

/// Runs each fuzz target (all of them, or those named) for the given seconds; a crash fails.
pub(crate) fn run_all(root: &Path, args: &[String]) -> Result<()> {
    let seconds = match args.first() {
        Some(s) => s
            .parse::<u64>()
            .with_context(|| format!("`{s}` is not a number of seconds"))?,
        None => DEFAULT_SECONDS,
    };
    let dir = root.join("fuzz");
    install_cargo_fuzz(root)?;
    let targets = match args.get(1..) {
        Some(named) if !named.is_empty() => named.to_vec(),
        _ => list_targets(&dir)?,
    };
    if targets.is_empty() {
        bail!("no fuzz targets found in {}", dir.display());
    }
    for target in &targets {
        // The target's own corpus (kept between runs, not in git) comes first: new inputs go
        // there. The checked-in seeds (`cargo +nightly run --example seeds`) are read only.
        let corpus = Path::new("corpus").join(target);
        std::fs::create_dir_all(dir.join(&corpus))
            .with_context(|| format!("could not create fuzz/{}", corpus.display()))?;
        let mut cmd = rustup_cargo();
        cmd.args([TOOLCHAIN, "fuzz", "run", target])
            .arg(&corpus)
            .current_dir(&dir);
        let seeds = Path::new("seeds").join(target);
        if dir.join(&seeds).is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args(["--", &format!("-max_total_time={seconds}")]);
        run(&mut cmd).with_context(|| {
            format!(
                "fuzz target `{target}` failed; the crashing input is in fuzz/artifacts/{target}/"
            )
        })?;
        eprintln!(
            "fuzz target `{target}`: {seconds} s, no crash, corpus of {} inputs",
            corpus_size(&dir, target)
        );
    }
    Ok(())
}

/// `cargo` as found on PATH (the rustup proxy, which understands `+nightly`), without the
/// toolchain variables that the outer `cargo xtask` set for the pinned stable toolchain.
fn rustup_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for key in [
        "CARGO",
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(key);
    }
    cmd
}

/// Installs cargo-fuzz with `cargo install --locked` unless `cargo fuzz` already works.
fn install_cargo_fuzz(root: &Path) -> Result<()> {
    let present = rustup_cargo()
        .args([TOOLCHAIN, "fuzz", "--version"])
        .current_dir(root)
        .output()
        .with_context(|| "could not run `cargo +nightly` (is rustup installed?)")?;
    if present.status.success() {
        return Ok(());
    }
    eprintln!("cargo-fuzz not found: installing it");
    run(rustup_cargo()
        .args(["install", "cargo-fuzz", "--locked"])
        .current_dir(root))
}

/// The targets `cargo fuzz list` reports for `dir`.
fn list_targets(dir: &Path) -> Result<Vec<String>> {
    let output = rustup_cargo()
        .args([TOOLCHAIN, "fuzz", "list"])
        .current_dir(dir)
        .output()
        .context("could not run `cargo +nightly fuzz list`")?;
    if !output.status.success() {
        bail!(
            "`cargo +nightly fuzz list` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Inputs in a target's corpus directory (0 when it does not exist).
fn corpus_size(dir: &Path, target: &str) -> usize {
    std::fs::read_dir(dir.join("corpus").join(target))
        .map(|entries| entries.count())
        .unwrap_or(0)
}
