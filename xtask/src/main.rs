//! `cargo xtask <task>`: every developer task of the Fabstir workspace, in Rust, with few
//! dependencies. Run `cargo xtask help` for the list.

mod bench;
mod contracts;
mod fuzz;
mod layers;
mod model;
mod tools;
mod train;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const HELP: &str = "\
cargo xtask <task>

Tasks:
  tools      install the pinned npm tools (anvil, solc, OpenZeppelin) into .tools/
  contracts  compile contracts/*.sol with the pinned solc into contracts-abi/
  gas        print the gas per contract operation and per complete job (measured on anvil)
  ci         everything CI checks: fmt, clippy, layer rules, tests, docs
  test       the test suite alone
  layers     check that crates depend on each other only in the allowed direction
  demo       the main job on a local embedded default
  bench      every benchmark (engine, p2p, payments, gas, the marketplace end to end) in one
             run: bench/results.json and a summary table
  fuzz       [seconds] [target...]: run each cargo-fuzz target N s (default 60; nightly; not in ci)
  model      download the larger stories15M checkpoint (needs internet; verified by SHA-256)
  train-model  train the character-level Shakespeare model into models/shakespeare
  help       this text
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let root = workspace_root()?;
    match task {
        "tools" => tools::install(&root).map(|_| ()),
        "contracts" => tools::install(&root).and_then(|_| contracts::build(&root)),
        "gas" => tools::install(&root).and_then(|_| gas(&root)),
        "ci" => ci(&root),
        "test" => test(&root),
        "layers" => layers::check_workspace(&root),
        "demo" => demo(&root),
        "model" => model::download(&root),
        "bench" => bench::run(&root),
        "fuzz" => fuzz::run_all(&root, &args[1..]),
        "train-model" => train::train_model(&root, &args[1..]),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}`\n\n{HELP}"),
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask is not inside the workspace")
}

/// Runs `cargo` with `args` in `root`, failing with the command line when it fails.
fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    run(Command::new(env_or("CARGO", "cargo"))
        .args(args)
        .current_dir(root))
}

/// Runs a command to completion, inheriting stdio; a non-zero exit is an error.
fn run(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {line}"))?;
    if !status.success() {
        bail!("{line} failed with {status}");
    }
    Ok(())
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn ci(root: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    tools::install(root)?;
    contracts::check_fresh(root)?;
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    layers::check_workspace(root)?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    test(root)?;
    run(Command::new(env_or("CARGO", "cargo"))
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .current_dir(root))?;
    // The README's main job must keep working. The test build already produced the binary
    // (the CLI's tests run it); `cargo run` would rebuild dependencies with another feature set.
    let built = target_dir(root).join("debug/fabstir");
    if built.is_file() {
        run(Command::new(built).arg("demo").current_dir(root))?;
    } else {
        demo(root)?;
    }
    eprintln!("ci passed in {:.0?}", started.elapsed());
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    tools::install(root)?;
    cargo(root, &["test", "--workspace", "--locked", "--no-fail-fast"])
}

/// Runs the gas measurement test of fabstir-contracts, which prints its table.
fn gas(root: &Path) -> Result<()> {
    let mut args = vec!["test", "-q", "-p", "fabstir-contracts", "--test", "it"];
    args.extend(["gas", "--", "--nocapture"]);
    cargo(root, &args)
}

fn demo(root: &Path) -> Result<()> {
    tools::install(root)?;
    // The whole marketplace on a local devnet: anvil, contracts, three hosts, one USDC and
    // one ETH job; it stops everything it started.
    cargo(
        root,
        &[
            "run",
            "--locked",
            "--package",
            "fabstir-cli",
            "--bin",
            "fabstir",
            "--",
            "demo",
        ],
    )
}
