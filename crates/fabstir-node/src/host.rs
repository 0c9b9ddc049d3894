//! The host's state and decisions: quotes and claims ([`claims`]), the terms every job is
//! checked against ([`terms`]), serving a client's stream ([`stream`]) and settling on chain
//! ([`settlement`]). [`HostHandle`] implements the network layer's
//! [`HostService`](fabstir_p2p::HostService) over it; the chain watcher in [`crate::chain`]
//! feeds it jobs announced on chain.

mod claims;
mod owners;
mod service;
mod sessions;
mod settlement;
mod stream;
mod terms;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use fabstir_contracts::{HeadlessContractManager, WalletSigner};
use fabstir_core::auth::{self, SigningKey};
use fabstir_core::primitives::Address;
use fabstir_core::wire::CapabilitiesResponse;
use fabstir_core::{
    JobId, ModelId, NodeCapabilities, NodePeerId, SessionId, TokenAmount, TokenPrice,
};
use fabstir_inference::InferenceBackend;
use fabstir_payments::SharedNonce;
use fabstir_storage::ResultStore;
use tokio::sync::{Mutex, Semaphore};

use crate::metrics::{CountGauge, Metrics};

pub use service::HostHandle;
pub(crate) use terms::Terms;

/// The software version hosts advertise.
pub const VERSION: &str = concat!("fabstir-node/", env!("CARGO_PKG_VERSION"));

/// A model the host serves: its backend and its prices.
#[derive(Clone)]
pub struct ServedModel {
    /// The model's name (its id is `keccak256(name)`).
    pub name: String,
    /// Where it runs.
    pub backend: Arc<dyn InferenceBackend>,
    /// Price per token, one per accepted payment token.
    pub prices: Vec<TokenPrice>,
}

impl ServedModel {
    /// The price per token in `token`, if this model accepts it.
    pub fn price(&self, token: Address) -> Option<TokenAmount> {
        self.prices
            .iter()
            .find(|p| p.token == token)
            .map(|p| p.price_per_token)
    }
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("prices", &self.prices)
            .finish_non_exhaustive()
    }
}

/// Limits of the host.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// Jobs run at once.
    pub max_concurrent: usize,
    /// Jobs waiting for a slot before new ones are refused.
    pub queue: usize,
    /// Most tokens generated for one job.
    pub max_tokens: u32,
    /// How long a quote holds.
    pub quote_validity: Duration,
    /// The least time before a job's deadline for this host to take it: enough to generate
    /// `max_tokens` and settle.
    pub min_time_left: Duration,
    /// The credit window named in quotes and enforced on streams: the most tokens streamed
    /// ahead of the client's newest receipt.
    pub credit_window: u32,
    /// A session is settled on chain (in part) once this many tokens are receipted since its
    /// last settlement.
    pub session_settle_every: u64,
    /// A session whose client sent no prompt for this long is closed with its newest receipt.
    pub session_idle: Duration,
}

/// The host node's state and decisions. Cheap to share behind an `Arc`.
pub struct Host {
    key: SigningKey,
    address: Address,
    chain_id: u64,
    peer_id: NodePeerId,
    contracts: HeadlessContractManager,
    sender: Arc<SharedNonce<WalletSigner>>,
    models: HashMap<ModelId, ServedModel>,
    store: Arc<dyn ResultStore>,
    owners: owners::ResultOwners,
    limits: HostLimits,
    slots: Semaphore,
    claims: DashMap<JobId, Arc<Mutex<Option<claims::ClaimedJob>>>>,
    sessions: DashMap<SessionId, Arc<Mutex<sessions::ServedSession>>>,
    metrics: Arc<Metrics>,
    stopping: AtomicBool,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("address", &self.address)
            .field("peer_id", &self.peer_id)
            .field(
                "models",
                &self.models.values().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Everything [`Host::new`] needs.
pub struct HostParts {
    /// The host's Ethereum key (identity and result signatures).
    pub key: SigningKey,
    /// The host's libp2p peer id.
    pub peer_id: NodePeerId,
    /// The chain.
    pub contracts: HeadlessContractManager,
    /// The host's transaction sender (its wallet with shared nonces).
    pub sender: Arc<SharedNonce<WalletSigner>>,
    /// Models served.
    pub models: Vec<ServedModel>,
    /// Where results are stored.
    pub store: Arc<dyn ResultStore>,
    /// The folder where the host records whose each result is (who may fetch it).
    pub owners: std::path::PathBuf,
    /// Limits.
    pub limits: HostLimits,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl Host {
    /// Builds the host.
    pub fn new(parts: HostParts) -> Self {
        let chain_id = parts.contracts.chain_id();
        Self {
            address: auth::address_of(&parts.key),
            key: parts.key,
            chain_id,
            peer_id: parts.peer_id,
            contracts: parts.contracts,
            sender: parts.sender,
            models: parts
                .models
                .into_iter()
                .map(|m| (ModelId::from_name(&m.name), m))
                .collect(),
            store: parts.store,
            owners: owners::ResultOwners::new(parts.owners),
            slots: Semaphore::new(parts.limits.max_concurrent.max(1)),
            limits: parts.limits,
            claims: DashMap::new(),
            sessions: DashMap::new(),
            metrics: parts.metrics,
            stopping: AtomicBool::new(false),
        }
    }

    /// Marks the host as stopping: jobs interrupted from now on are not settled (as after a
    /// crash, their clients recover the escrow), and no new job is claimed.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The models served, by id.
    pub fn models(&self) -> impl Iterator<Item = (&ModelId, &ServedModel)> {
        self.models.iter()
    }

    /// The host's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain access the host uses.
    pub fn contracts(&self) -> &HeadlessContractManager {
        &self.contracts
    }

    /// The host's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The capabilities advertised now.
    pub fn current_capabilities(&self) -> NodeCapabilities {
        NodeCapabilities {
            peer_id: self.peer_id.clone(),
            eth_address: self.address,
            models: self.models.keys().copied().collect(),
            prices: distinct_prices(self.models.values()),
            max_tokens: self.limits.max_tokens,
            current_load: gauge(&self.metrics.jobs_running),
            max_concurrent: u32::try_from(self.limits.max_concurrent).unwrap_or(u32::MAX),
            queue_depth: gauge(&self.metrics.jobs_waiting),
            version: VERSION.to_owned(),
        }
    }

    /// The capabilities advertised now, with the identity signature that binds this peer id
    /// to the host's address on this chain.
    fn signed_capabilities(&self) -> CapabilitiesResponse {
        let capabilities = self.current_capabilities();
        let message = auth::identity_message(
            self.chain_id,
            &capabilities.peer_id,
            capabilities.eth_address,
        );
        CapabilitiesResponse {
            capabilities,
            chain_id: self.chain_id,
            identity_signature: self.sign(&message),
        }
    }

    /// Signs `message` with the host's key (an empty signature if signing fails).
    fn sign(&self, message: &str) -> Vec<u8> {
        auth::sign_message(&self.key, message)
            .map(|s| s.to_vec())
            .unwrap_or_default()
    }

    fn busy(&self) -> bool {
        let waiting = usize::try_from(gauge(&self.metrics.jobs_waiting)).unwrap_or(usize::MAX);
        self.slots.available_permits() == 0 && waiting >= self.limits.queue
    }
}

/// The first price of each payment token over `models`, in order: what a host registers and
/// advertises.
pub(crate) fn distinct_prices<'a>(
    models: impl IntoIterator<Item = &'a ServedModel>,
) -> Vec<TokenPrice> {
    let mut prices: Vec<TokenPrice> = Vec::new();
    for price in models.into_iter().flat_map(|m| &m.prices) {
        if !prices.iter().any(|p| p.token == price.token) {
            prices.push(*price);
        }
    }
    prices
}

fn gauge(value: &CountGauge) -> u32 {
    u32::try_from(value.get()).unwrap_or(u32::MAX)
}

/// What a peer is told when something failed inside this host: only `what` failed. The error
/// itself goes to the log: it may name an RPC or inference URL with its key, or a path on
/// this machine.
pub(crate) fn internal(what: &str, error: &dyn std::fmt::Display) -> String {
    tracing::warn!(error = %error, "{what}");
    what.to_owned()
}
