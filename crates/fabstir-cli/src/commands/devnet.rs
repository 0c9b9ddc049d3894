//! `fabstir devnet`: a local marketplace until Ctrl-C, with the files a client needs.

use std::path::{Path, PathBuf};

use anyhow::Result;
use ethers::signers::{LocalWallet, Signer as _};
use fabstir_cli::devnet::{Devnet, DevnetConfig, accounts};

/// Arguments of `fabstir devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of host nodes.
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// Where to write the deployment, configuration and host storage.
    #[arg(long, default_value = "devnet")]
    dir: PathBuf,
    /// Mine a block every this many seconds (as Base does every 2) instead of one block per
    /// transaction.
    #[arg(long)]
    block_time: Option<u64>,
}

/// Starts the devnet, writes `sdk.toml` and `client.key` into its folder, and runs until
/// Ctrl-C.
pub(crate) async fn run(args: Args) -> Result<()> {
    let dir = &args.dir;
    let mut config = DevnetConfig::new(&workspace_root());
    config.hosts = args.hosts;
    config.dir = Some(dir.clone());
    config.block_time = args.block_time;
    let devnet = Devnet::start(config).await?;
    let sdk_path = dir.join("sdk.toml");
    std::fs::write(&sdk_path, devnet.sdk_config.to_toml()?)?;
    let key_path = dir.join("client.key");
    let client = devnet.wallet(accounts::CLIENT)?;
    std::fs::write(&key_path, format!("0x{}\n", hex_key(&client)))?;
    outln!(
        "devnet up: chain {} at {}",
        devnet.deployment.chain_id,
        devnet.anvil.endpoint()
    );
    outln!("  deployment  {}", dir.join("deployment.json").display());
    outln!("  sdk config  {}", sdk_path.display());
    outln!(
        "  client key  {} (a public anvil test key, {:#x})",
        key_path.display(),
        client.address()
    );
    for (i, addr) in devnet.bootstrap.iter().enumerate() {
        outln!("  host {i}      {addr}");
    }
    outln!(
        "try: fabstir --config {} --key-file {} ask \"Once upon a time\" --model {} --pay USDC",
        sdk_path.display(),
        key_path.display(),
        DevnetConfig::new(&workspace_root()).model.name
    );
    outln!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    devnet.stop().await
}

/// The workspace the binary was built in (its models), else the current folder.
pub(crate) fn workspace_root() -> PathBuf {
    // The binary runs from the workspace in the demo; fall back to the current folder.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .filter(|p| p.join("Cargo.toml").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn hex_key(wallet: &LocalWallet) -> String {
    wallet
        .signer()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
