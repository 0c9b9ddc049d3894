//! The Fabstir LLM host node: registers on the NodeRegistry, advertises its models in the
//! DHT, claims jobs, runs inference, streams tokens to the client, stores the result by CID and
//! submits it on chain to be paid.
//!
//! [`start`] brings a node up from a [`NodeConfig`] and the host's key and returns a
//! [`RunningNode`]; [`run`] is the binary's loop (key from the environment or a file, runs
//! until shutdown). The decisions live in [`Host`], which implements the network layer's
//! `HostService`; [`chain`] registers the host and claims jobs announced on chain.

pub mod chain;
pub mod config;
mod error;
mod host;
pub mod keys;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use ethers::providers::Middleware as _;
use ethers::signers::LocalWallet;
use fabstir_contracts::ChainPeerRegistry;
use fabstir_contracts::{HeadlessContractManager, ManagerConfig};
use fabstir_core::auth::SigningKey;
use fabstir_core::{Deployment, ModelId, NodePeerId, TokenPrice};
use fabstir_inference::{
    EmbeddedEngine, EngineConfig, InferenceBackend, OpenAiBackend, OpenAiConfig,
};
use fabstir_p2p::{HostService, Multiaddr, Network, P2pConfig};
use fabstir_payments::NonceBook;
use fabstir_storage::{LocalStore, ResultStore};
use tokio_util::sync::CancellationToken;

pub use config::{BackendConfig, ModelConfig, NodeConfig};
pub use error::{Error, Result};
pub use host::{Host, HostHandle, HostLimits, HostParts, ServedModel, VERSION};

/// A node that is up: registered, listening, advertising and watching the chain.
#[derive(Debug)]
pub struct RunningNode {
    /// The network handle.
    pub network: Network,
    /// The host's state.
    pub host: Arc<Host>,
    /// Where `/metrics` is served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// What the start-up registration check did.
    pub registration: chain::RegistrationOutcome,
    shutdown: CancellationToken,
}

impl RunningNode {
    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> fabstir_p2p::PeerId {
        self.network.peer_id()
    }

    /// The addresses the node listens on, each with `/p2p/<peer id>` (what clients and other
    /// nodes use as a bootstrap address).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        let peer = self.peer_id();
        Ok(self
            .network
            .listen_addrs()
            .await?
            .into_iter()
            .map(|a| {
                let has_peer = a
                    .iter()
                    .any(|p| matches!(p, fabstir_p2p::libp2p::multiaddr::Protocol::P2p(_)));
                if has_peer {
                    a
                } else {
                    a.with(fabstir_p2p::libp2p::multiaddr::Protocol::P2p(peer))
                }
            })
            .collect())
    }

    /// Stops the node: the chain watcher, the metrics endpoint and the network.
    pub async fn stop(self) -> Result<()> {
        self.host.stop();
        self.shutdown.cancel();
        self.network.shutdown().await?;
        Ok(())
    }
}

/// Wraps each loaded inference backend (to pace or instrument it in tests and benchmarks).
pub type BackendWrapper =
    Arc<dyn Fn(Arc<dyn InferenceBackend>) -> Arc<dyn InferenceBackend> + Send + Sync>;

/// Wraps the node's result store (to instrument it, or to corrupt it in fault-injection tests).
pub type StoreWrapper = Arc<dyn Fn(Arc<dyn ResultStore>) -> Arc<dyn ResultStore> + Send + Sync>;

/// Builds the service the network layer calls from the node's [`Host`] (to observe or alter
/// what the node answers, for tests). Without one the network calls [`HostHandle`].
pub type ServiceWrapper = Arc<dyn Fn(Arc<Host>) -> Arc<dyn HostService> + Send + Sync>;

/// Optional wrappers around the parts a node is built from, for tests and benchmarks:
/// pacing the backend, instrumenting the store, injecting faults. The default wraps nothing.
#[derive(Clone, Default)]
pub struct NodeHooks {
    /// Applied to each configured backend.
    pub backend: Option<BackendWrapper>,
    /// Applied to the result store.
    pub store: Option<StoreWrapper>,
    /// Builds the network layer's service from the host.
    pub service: Option<ServiceWrapper>,
}

impl std::fmt::Debug for NodeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHooks")
            .field("backend", &self.backend.is_some())
            .field("store", &self.store.is_some())
            .field("service", &self.service.is_some())
            .finish()
    }
}

/// Starts a node with the given host key.
pub async fn start(config: &NodeConfig, key: SigningKey) -> Result<RunningNode> {
    start_with(config, key, NodeHooks::default()).await
}

/// [`start`] with the node's parts passed through `hooks`.
pub async fn start_with(
    config: &NodeConfig,
    key: SigningKey,
    hooks: NodeHooks,
) -> Result<RunningNode> {
    config.validate()?;
    let deployment = Deployment::load(&config.deployment)?;
    let manager_config = ManagerConfig {
        poll_interval: config.poll_interval,
    };
    let contracts =
        HeadlessContractManager::connect(&config.rpc_url, &deployment, &manager_config).await?;
    let address = fabstir_core::auth::address_of(&key);
    let sender = NonceBook::new().wrap(contracts.signer(LocalWallet::from(key.clone())), address);

    let keypair = keys::load_or_create_p2p_key(&config.storage)?;
    let libp2p_peer = keypair.public().to_peer_id();
    let peer_id = NodePeerId::from_bytes(libp2p_peer.to_bytes())?;

    let models = config
        .models
        .iter()
        .map(|m| served_model(m, &deployment))
        .map(|m| {
            m.map(|mut m| {
                if let Some(wrap) = &hooks.backend {
                    m.backend = wrap(m.backend);
                }
                m
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let model_ids: Vec<ModelId> = models.iter().map(|m| ModelId::from_name(&m.name)).collect();
    let prices = host::distinct_prices(&models);
    let stake = match &config.stake {
        Some(text) => Some(fabstir_core::TokenAmount::parse(text, 18)?),
        None => None,
    };
    let outcome = chain::ensure_registered(
        &contracts,
        &sender,
        address,
        &chain::Registration {
            peer_id: peer_id.clone(),
            models: model_ids.clone(),
            prices,
            metadata: format!("{{\"version\":\"{VERSION}\"}}"),
            stake,
        },
    )
    .await?;
    tracing::info!(%address, peer = %peer_id, ?outcome, "registration checked");

    let mut store: Arc<dyn ResultStore> =
        Arc::new(LocalStore::open(config.storage.join("results")).await?);
    if let Some(wrap) = &hooks.store {
        store = wrap(store);
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let host = Arc::new(Host::new(HostParts {
        key,
        peer_id,
        contracts: contracts.clone(),
        sender,
        models,
        store,
        owners: config.storage.join("owners"),
        limits: HostLimits {
            max_concurrent: config.max_concurrent,
            queue: config.queue,
            max_tokens: config.max_tokens,
            quote_validity: config.quote_validity,
            min_time_left: config.min_time_left,
            credit_window: config.credit_window,
            session_settle_every: config.session_settle_tokens,
            session_idle: config.session_idle_close,
        },
        metrics: metrics.clone(),
    }));

    let mut p2p = P2pConfig {
        chain_id: deployment.chain_id,
        marketplace: deployment.contracts.job_marketplace,
        ..P2pConfig::default()
    };
    p2p.stream.credit_window = config.credit_window;
    p2p.stream.stall_timeout = config.receipt_timeout;
    p2p.listen_addrs = parse_addrs(&config.listen)?;
    p2p.bootstrap_peers = parse_addrs(&config.bootstrap_peers)?;
    let service: Arc<dyn HostService> = match &hooks.service {
        Some(wrap) => wrap(host.clone()),
        None => Arc::new(HostHandle(host.clone())),
    };
    let network = Network::spawn(
        p2p,
        keypair,
        Arc::new(ChainPeerRegistry::new(contracts.clone())),
        Some(service),
    )
    .await?;
    for model in &model_ids {
        if let Err(e) = network.advertise(model).await {
            // With no peers yet the record is stored locally and spreads once peers connect.
            tracing::debug!(%model, error = %e, "advertising");
        }
    }

    let shutdown = CancellationToken::new();
    let from_block = contracts
        .provider()
        .get_block_number()
        .await
        .map_err(|e| fabstir_contracts::Error::Rpc(e.to_string()))?
        .as_u64();
    tokio::spawn(chain::watch_jobs(
        host.clone(),
        from_block,
        shutdown.child_token(),
    ));
    let metrics_addr = match config.metrics {
        Some(addr) => Some(
            metrics::serve(addr, metrics, shutdown.child_token())
                .await
                .map_err(|source| Error::Io {
                    path: addr.to_string().into(),
                    source,
                })?,
        ),
        None => None,
    };
    Ok(RunningNode {
        network,
        host,
        metrics_addr,
        registration: outcome,
        shutdown,
    })
}

/// Runs a node until `shutdown` is cancelled: the key comes from `FABSTIR_HOST_KEY` or the
/// configured key file.
pub async fn run(config: NodeConfig, shutdown: CancellationToken) -> Result<()> {
    let key = keys::load_host_key(
        std::env::var("FABSTIR_HOST_KEY").ok(),
        config.host_key_file.as_deref(),
    )?;
    let node = start(&config, key).await?;
    for addr in node.listen_addrs().await? {
        tracing::info!(%addr, "listening");
    }
    shutdown.cancelled().await;
    node.stop().await
}

fn served_model(config: &ModelConfig, deployment: &Deployment) -> Result<ServedModel> {
    let backend: Arc<dyn InferenceBackend> = match &config.backend {
        BackendConfig::Embedded {
            checkpoint,
            tokenizer,
        } => Arc::new(EmbeddedEngine::load(&EngineConfig {
            name: config.name.clone(),
            checkpoint: checkpoint.clone(),
            tokenizer: tokenizer.clone(),
            ..EngineConfig::default()
        })?),
        BackendConfig::Openai { url, model } => Arc::new(OpenAiBackend::new(OpenAiConfig {
            base_url: url.clone(),
            model: model.clone(),
            ..OpenAiConfig::default()
        })?),
    };
    let prices = config
        .prices
        .iter()
        .map(|(symbol, human)| {
            let token = deployment.token(symbol).ok_or_else(|| {
                Error::Config(format!(
                    "model {}: token {symbol} is not in the deployment",
                    config.name
                ))
            })?;
            Ok(TokenPrice {
                token: token.address(),
                price_per_token: token.parse_amount(human)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ServedModel {
        name: config.name.clone(),
        backend,
        prices,
    })
}

fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e| Error::Config(format!("address {a:?}: {e}")))
        })
        .collect()
}
