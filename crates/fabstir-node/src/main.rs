//! `fabstir-node`: runs a Fabstir LLM host from a TOML configuration.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Runs a Fabstir LLM host node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's TOML configuration.
    #[arg(long, short, env = "FABSTIR_NODE_CONFIG")]
    config: PathBuf,
    /// Overrides the configuration's RPC URL.
    #[arg(long)]
    rpc_url: Option<String>,
    /// Overrides the configuration's storage folder.
    #[arg(long)]
    storage: Option<PathBuf>,
    /// Adds a bootstrap peer (repeatable).
    #[arg(long = "bootstrap")]
    bootstrap: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut config = fabstir_node::NodeConfig::load(&args.config)
        .with_context(|| format!("loading {}", args.config.display()))?;
    config.apply_env(std::env::vars());
    if let Some(url) = args.rpc_url {
        config.rpc_url = url;
    }
    if let Some(storage) = args.storage {
        config.storage = storage;
    }
    config.bootstrap_peers.extend(args.bootstrap);

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        on_signal.cancel();
    });
    fabstir_node::run(config, shutdown)
        .await
        .context("node failed")
}
