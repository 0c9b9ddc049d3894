//! The options every command shares, and the one place that resolves and loads the client's
//! configuration, its deployment and its key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ethers::signers::LocalWallet;
use fabstir_core::Deployment;
use fabstir_sdk::{FabstirSdk, SdkConfig};

/// The SDK configuration used without `--config`: the one `fabstir devnet` writes.
const DEFAULT_CONFIG: &str = "devnet/sdk.toml";

/// The deployment's file name beside the configuration, used without `--deployment`.
const DEPLOYMENT_FILE: &str = "deployment.json";

/// Options of every command.
#[derive(Debug, clap::Args)]
pub(crate) struct Global {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// SDK configuration (TOML); `fabstir devnet` writes one.
    #[arg(long, global = true, env = "FABSTIR_CONFIG")]
    config: Option<PathBuf>,
    /// Deployment file (JSON); defaults to `deployment.json` beside the configuration.
    #[arg(long, global = true, env = "FABSTIR_DEPLOYMENT")]
    deployment: Option<PathBuf>,
    /// File holding the client's private key (hex). `FABSTIR_KEY` in the environment takes
    /// precedence. Keys are never accepted on the command line.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
}

/// The client's configuration and the deployment it runs against.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The SDK configuration, with the deployment's contracts and chain id.
    pub(crate) config: SdkConfig,
    /// The deployed contracts and tokens.
    pub(crate) deployment: Deployment,
}

impl Global {
    /// Loads the configuration (`--config`, else `devnet/sdk.toml`) and the deployment
    /// (`--deployment`, else `deployment.json` beside the configuration).
    pub(crate) fn settings(&self) -> Result<Settings> {
        let config_path = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let mut config = SdkConfig::load(&config_path).with_context(|| {
            format!(
                "loading {} (run `fabstir devnet` first?)",
                config_path.display()
            )
        })?;
        let deployment_path = self.deployment.clone().unwrap_or_else(|| {
            config_path
                .parent()
                .unwrap_or(Path::new("."))
                .join(DEPLOYMENT_FILE)
        });
        let deployment = Deployment::load(&deployment_path)?;
        config.contracts = deployment.contracts;
        config.chain_id = deployment.chain_id;
        Ok(Settings { config, deployment })
    }

    /// Loads the settings and connects an SDK; with `signer`, sets the key.
    pub(crate) async fn connect(&self, signer: bool) -> Result<FabstirSdk> {
        self.settings()?.connect(self, signer).await
    }

    /// The client's key: `FABSTIR_KEY`, else the `--key-file`.
    pub(crate) fn key(&self) -> Result<LocalWallet> {
        let text = match std::env::var("FABSTIR_KEY") {
            Ok(text) => text,
            Err(_) => {
                let path = self
                    .key_file
                    .as_ref()
                    .context("set FABSTIR_KEY or pass --key-file")?;
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
        };
        text.trim()
            .trim_start_matches("0x")
            .parse::<LocalWallet>()
            .map_err(|_| anyhow::anyhow!("the key is not a valid hex private key"))
    }
}

impl Settings {
    /// Connects an SDK with these settings; with `signer`, sets the key from `global`.
    pub(crate) async fn connect(&self, global: &Global, signer: bool) -> Result<FabstirSdk> {
        let sdk = FabstirSdk::connect(self.config.clone(), &self.deployment).await?;
        if signer {
            sdk.set_signer(global.key()?)?;
        }
        Ok(sdk)
    }
}
