//! A complete local marketplace in one process: a real anvil chain, the contracts deployed and
//! funded (the `fabstir-contracts` local-chain harness), and N host nodes with the embedded
//! engine. Used by `fabstir devnet`, the demo and the end-to-end tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ethers::signers::{LocalWallet, Signer as _};
use fabstir_contracts::anvil::Anvil;
use fabstir_contracts::testing::{self, LocalChain, LocalChainConfig};
use fabstir_core::Deployment;
use fabstir_node::{BackendConfig, ModelConfig, NodeConfig, NodeHooks, RunningNode};
use fabstir_sdk::FabstirSdk;
use fabstir_sdk::{SdkConfig, Timeouts};

/// Dev account roles on the devnet's anvil: the local-chain harness's.
pub mod accounts {
    use super::testing;

    /// Deploys and owns the contracts.
    pub const OWNER: usize = testing::DEPLOYER;
    /// The client the demo and tests pay from.
    pub const CLIENT: usize = testing::CLIENT;
    /// The first host; host `i` is `FIRST_HOST + i`.
    pub const FIRST_HOST: usize = testing::FIRST_HOST;
    /// Receives protocol fees.
    pub const TREASURY: usize = testing::TREASURY;
}

/// What to start.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Number of hosts (1 to 7).
    pub hosts: usize,
    /// The model served by every host.
    pub model: ModelFiles,
    /// Prices per token by symbol, in human units.
    pub prices: BTreeMap<String, String>,
    /// Where deployment, host storage and configuration go; a temporary folder when `None`.
    pub dir: Option<PathBuf>,
    /// Job deadline the client's SDK configuration uses.
    pub job_deadline: Duration,
    /// How long the client waits for a token before it calls a stream stalled.
    pub stream_stall: Duration,
    /// Paces every host to one token per this delay (simulates slower hardware).
    pub token_delay: Option<Duration>,
    /// How long the client waits for a host to claim a posted job before it cancels it and
    /// tries another host.
    pub claim_timeout: Duration,
    /// Mine a block every this many seconds once the devnet is up (as a real chain does),
    /// instead of one block per transaction.
    pub block_time: Option<u64>,
    /// Wrappers applied to every host's parts (fault injection and instrumentation in tests);
    /// a backend wrapper applies inside the `token_delay` pacing.
    pub hooks: NodeHooks,
}

/// A model's files.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// Name the model is served under.
    pub name: String,
    /// llama2.c checkpoint.
    pub checkpoint: PathBuf,
    /// llama2.c tokenizer, if the model has one.
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// The model the project ships: `models/shakespeare` in the workspace when present
    /// (readable text), else `models/tinyllamas/stories260K.bin` (token ids only).
    pub fn default_for(workspace: &Path) -> Self {
        let shakespeare = workspace.join("models/shakespeare");
        if shakespeare.join("model.bin").exists() {
            return Self {
                name: "shakespeare".into(),
                checkpoint: shakespeare.join("model.bin"),
                tokenizer: Some(shakespeare.join("tokenizer.bin")),
            };
        }
        Self {
            name: "stories260K".into(),
            checkpoint: workspace.join("models/tinyllamas/stories260K.bin"),
            tokenizer: None,
        }
    }
}

impl DevnetConfig {
    /// Three hosts serving the project's default model, priced 0.000001 USDC and 1 gwei per
    /// token.
    pub fn new(workspace: &Path) -> Self {
        Self {
            hosts: 3,
            model: ModelFiles::default_for(workspace),
            prices: BTreeMap::from([
                ("USDC".to_owned(), "0.000001".to_owned()),
                ("ETH".to_owned(), "0.000000001".to_owned()),
                ("DAI".to_owned(), "0.000001".to_owned()),
            ]),
            dir: None,
            job_deadline: Duration::from_secs(120),
            stream_stall: Duration::from_secs(5),
            token_delay: None,
            claim_timeout: Duration::from_secs(30),
            block_time: None,
            hooks: NodeHooks::default(),
        }
    }
}

/// A running devnet. [`Devnet::stop`] stops the hosts and then the chain; dropping it kills
/// anvil at once (the hosts' tasks end with the runtime).
pub struct Devnet {
    /// The chain.
    pub anvil: Anvil,
    /// Contract and token addresses.
    pub deployment: Deployment,
    /// The hosts, in order; a stopped host leaves `None`.
    pub nodes: Vec<Option<RunningNode>>,
    /// Bootstrap addresses of the hosts.
    pub bootstrap: Vec<String>,
    /// The client configuration to connect an SDK with.
    pub sdk_config: SdkConfig,
    /// The folder holding deployment and host storage.
    pub dir: PathBuf,
    node_configs: Vec<NodeConfig>,
    token_delay: Option<Duration>,
    hooks: NodeHooks,
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("rpc", &self.anvil.endpoint())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Devnet {
    /// Starts anvil, deploys and funds, and starts the hosts.
    pub async fn start(config: DevnetConfig) -> Result<Self> {
        anyhow::ensure!((1..=7).contains(&config.hosts), "1 to 7 hosts");
        let (dir, temp) = match &config.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::tempdir().context("creating a temporary folder")?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        // The client and the hosts are funded; nobody else.
        let chain = LocalChain::start_with(&LocalChainConfig {
            hosts: config.hosts,
            others: 0,
            unfunded: 0,
            ..LocalChainConfig::default()
        })
        .await
        .context("starting anvil and deploying the contracts")?;
        let (anvil, deployment) = chain.into_parts();
        let deployment_path = dir.join("deployment.json");
        deployment.save(&deployment_path)?;

        let mut devnet = Self {
            sdk_config: SdkConfig::default(),
            anvil,
            deployment,
            nodes: Vec::new(),
            bootstrap: Vec::new(),
            dir,
            node_configs: Vec::new(),
            token_delay: config.token_delay,
            hooks: config.hooks.clone(),
            _temp: temp,
        };
        for i in 0..config.hosts {
            let models = vec![ModelConfig {
                name: config.model.name.clone(),
                backend: BackendConfig::Embedded {
                    checkpoint: config.model.checkpoint.clone(),
                    tokenizer: config.model.tokenizer.clone(),
                },
                prices: config.prices.clone(),
            }];
            let storage = devnet.dir.join(format!("host-{i}"));
            let node_config = NodeConfig {
                rpc_url: devnet.anvil.endpoint(),
                listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
                bootstrap_peers: devnet.bootstrap.clone(),
                max_concurrent: 4,
                queue: 64,
                poll_interval: Duration::from_millis(10),
                ..NodeConfig::new(deployment_path.clone(), storage, models)
            };
            devnet.node_configs.push(node_config);
            devnet.start_node(i).await?;
        }
        devnet.sdk_config = SdkConfig {
            rpc_url: devnet.anvil.endpoint(),
            chain_id: devnet.deployment.chain_id,
            contracts: devnet.deployment.contracts,
            bootstrap_peers: devnet.bootstrap.clone(),
            timeouts: Timeouts {
                claim: config.claim_timeout,
                stream_stall: config.stream_stall,
                job_deadline: config.job_deadline,
                ..Timeouts::default()
            },
            // anvil mines every transaction at once: poll often.
            poll_interval: Duration::from_millis(10),
            ..SdkConfig::default()
        };
        // Deployed, funded and registered at once; from here on blocks come at their pace.
        if let Some(seconds) = config.block_time {
            let provider = devnet.anvil.provider()?;
            fabstir_contracts::anvil::set_block_time(&provider, seconds)
                .await
                .context("setting the block time")?;
        }
        Ok(devnet)
    }

    /// Starts (or restarts) host `i` with its configuration and storage.
    pub async fn start_node(&mut self, i: usize) -> Result<()> {
        let config = self.node_configs.get(i).context("no such host")?.clone();
        let key = self
            .anvil
            .wallet(accounts::FIRST_HOST + i)?
            .signer()
            .clone();
        let mut hooks = self.hooks.clone();
        if let Some(delay) = self.token_delay {
            let inner_wrap = hooks.backend.take();
            hooks.backend = Some(Arc::new(move |backend| {
                let backend = match &inner_wrap {
                    Some(wrap) => wrap(backend),
                    None => backend,
                };
                Arc::new(fabstir_inference::Throttled::new(backend, delay))
                    as Arc<dyn fabstir_inference::InferenceBackend>
            }));
        }
        let node = fabstir_node::start_with(&config, key, hooks)
            .await
            .with_context(|| format!("starting host {i}"))?;
        let addrs = node.listen_addrs().await?;
        for addr in addrs {
            let addr = addr.to_string();
            if !self.bootstrap.contains(&addr) {
                self.bootstrap.push(addr);
            }
        }
        if self.nodes.len() <= i {
            self.nodes.resize_with(i + 1, || None);
        }
        self.nodes[i] = Some(node);
        Ok(())
    }

    /// Stops host `i` (as if it crashed: its connections close at once).
    pub async fn stop_node(&mut self, i: usize) -> Result<()> {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.stop().await?;
        }
        Ok(())
    }

    /// Stops every host, then the chain (in that order, so that no host is left polling a
    /// chain that is gone).
    pub async fn stop(mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.stop_node(i).await?;
        }
        Ok(())
    }

    /// The dev account `index` as a wallet on this chain.
    pub fn wallet(&self, index: usize) -> Result<LocalWallet> {
        Ok(self
            .anvil
            .wallet(index)?
            .with_chain_id(self.anvil.chain_id()))
    }

    /// An SDK connected to this devnet, with the client wallet set as signer.
    pub async fn client_sdk(&self) -> Result<FabstirSdk> {
        let sdk = self.sdk().await?;
        sdk.set_signer(self.wallet(accounts::CLIENT)?)?;
        Ok(sdk)
    }

    /// An SDK connected to this devnet, without a signer.
    pub async fn sdk(&self) -> Result<FabstirSdk> {
        Ok(FabstirSdk::connect(self.sdk_config.clone(), &self.deployment).await?)
    }
}
