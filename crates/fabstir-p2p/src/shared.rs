//! What the [`Network`](crate::Network) handles and the event loop both use: the state they
//! share (connection pool, measured round trips, reported addresses, the discovery cache and
//! this client's history with each host) and the [`NetworkEvent`]s the loop publishes.

use std::sync::Arc;
use std::time::Duration;

use crate::config::PoolConfig;
use dashmap::DashMap;
use fabstir_core::node::{NodeCapabilities, NodeHistory};
use fabstir_core::{DiscoveredNode, ModelId, NodePeerId};
use libp2p::{Multiaddr, PeerId};

use crate::pool::ConnectionPool;

/// Something that happened on the network, for subscribers of
/// [`Network::events`](crate::Network::events).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// The node listens on a new address.
    Listening(Multiaddr),
    /// A first connection to a peer opened.
    Connected(PeerId),
    /// The last connection to a peer closed.
    Disconnected(PeerId),
    /// A peer told us who it is.
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its agent version (`fabstir/0.1.0` for our nodes).
        agent: String,
    },
}

/// State shared between the handles and the event loop.
pub(crate) struct Shared {
    pub(crate) pool: Arc<ConnectionPool>,
    /// Last ping round-trip time per connected peer.
    pub(crate) rtt: DashMap<PeerId, Duration>,
    /// Listen addresses peers reported through Identify.
    pub(crate) addrs: DashMap<PeerId, Vec<Multiaddr>>,
    /// Verified providers (capabilities and measured latency), with the discovery TTL.
    pub(crate) nodes: moka::future::Cache<PeerId, DiscoveredNode>,
    /// Providers per model, with the discovery TTL.
    pub(crate) models: moka::future::Cache<ModelId, Arc<Vec<PeerId>>>,
    /// This client's history with each host.
    pub(crate) history: DashMap<NodePeerId, NodeHistory>,
}

impl Shared {
    /// Empty state with a connection pool of `pool` and discovery entries living `ttl`.
    pub(crate) fn new(pool: PoolConfig, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(1));
        Self {
            pool: Arc::new(ConnectionPool::new(pool)),
            rtt: DashMap::new(),
            addrs: DashMap::new(),
            nodes: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            models: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(ttl)
                .build(),
            history: DashMap::new(),
        }
    }

    /// `peer` as discovered now, from its verified `capabilities`: its latency is the ping
    /// round trip when known and `request_rtt` otherwise, with the addresses it reported and
    /// this client's history with it.
    pub(crate) fn discovered(
        &self,
        peer: &PeerId,
        capabilities: NodeCapabilities,
        request_rtt: Duration,
    ) -> DiscoveredNode {
        let latency = self.rtt.get(peer).map(|r| *r).unwrap_or(request_rtt);
        let addresses = self
            .addrs
            .get(peer)
            .map(|a| a.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let history = self
            .history
            .get(&capabilities.peer_id)
            .map(|h| *h)
            .unwrap_or_default();
        DiscoveredNode {
            capabilities,
            addresses,
            latency,
            history,
        }
    }

    /// The cached verified providers of `model` (empty when the cache has none).
    pub(crate) async fn cached_providers(&self, model: &ModelId) -> Vec<DiscoveredNode> {
        let mut nodes = Vec::new();
        if let Some(peers) = self.models.get(model).await {
            for peer in peers.iter() {
                if let Some(node) = self.nodes.get(peer).await {
                    nodes.push(node);
                }
            }
        }
        nodes
    }

    /// Brings each node's history up to date with this client's record.
    pub(crate) fn refresh_history(&self, nodes: &mut [DiscoveredNode]) {
        for node in nodes {
            if let Some(h) = self.history.get(&node.capabilities.peer_id) {
                node.history = *h;
            }
        }
    }

    /// Records the outcome of a job with `host`.
    pub(crate) fn record_outcome(&self, host: &NodePeerId, success: bool) {
        let mut entry = self.history.entry(host.clone()).or_default();
        if success {
            entry.successes = entry.successes.saturating_add(1);
        } else {
            entry.failures = entry.failures.saturating_add(1);
        }
    }

    /// A peer failed us: forget what discovery knew about it.
    pub(crate) async fn forget(&self, peer: &PeerId) {
        self.nodes.invalidate(peer).await;
    }
}
