//! The [`Network`] handle: a cheap `Clone` that talks to the event loop owning the swarm, and
//! the client-side operations built on it (discovery, capabilities, negotiation, results).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use fabstir_core::node::NodeHistory;
use fabstir_core::wire::{CapabilitiesRequest, CapabilitiesResponse, JobRequest, JobResponse};
use fabstir_core::{DiscoveredNode, ModelId, NodePeerId, ProviderQuery};
use futures::{Stream, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::behaviour::build_swarm;
use crate::codec::{ResultRequest, ResultResponse};
use crate::config::P2pConfig;
use crate::dht::provider_key;
use crate::event_loop::{Command, EventLoop};
use crate::pool::{ConnectionPool, PoolStats};
use crate::registry::{node_peer_id, verify_capabilities};
use crate::service::HostService;
use crate::{Error, Result};
use fabstir_core::PeerRegistry;

/// Something that happened on the network, for subscribers of [`Network::events`].
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

struct Inner {
    peer_id: PeerId,
    config: P2pConfig,
    commands: mpsc::Sender<Command>,
    control: libp2p_stream::Control,
    registry: Arc<dyn PeerRegistry>,
    shared: Arc<Shared>,
    events: broadcast::Sender<NetworkEvent>,
    shutdown: watch::Sender<bool>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::fault::FaultSlot>,
}

/// A handle on a running Fabstir network node. Cheap to clone; every clone talks to the same
/// event loop. The node stops when [`Network::shutdown`] is called or every handle is dropped.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Starts a node: builds the swarm with `keypair`, listens on the configured addresses
    /// (returning once each listener has an address), dials the bootstrap peers, and spawns
    /// the event loop. With a `host` service the node answers capabilities, job and result
    /// requests and serves token streams; without one it is a plain peer (DHT and client).
    ///
    /// `registry` tells the client side who owns a peer id (see [`PeerRegistry`]).
    pub async fn spawn(
        config: P2pConfig,
        keypair: Keypair,
        registry: Arc<dyn PeerRegistry>,
        host: Option<Arc<dyn HostService>>,
    ) -> Result<Self> {
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = build_swarm(keypair, &config, host.is_some()).await?;
        let mut listeners = Vec::new();
        for addr in &config.listen_addrs {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| Error::Config(format!("listen on {addr}: {e}")))?;
            listeners.push(id);
        }
        // Wait until each listener has an address, so that callers can hand them out.
        let wait = async {
            while !listeners.is_empty() {
                match swarm.select_next_some().await {
                    libp2p::swarm::SwarmEvent::NewListenAddr { listener_id, .. } => {
                        listeners.retain(|l| *l != listener_id);
                    }
                    libp2p::swarm::SwarmEvent::ListenerError { error, .. } => {
                        return Err(Error::Config(format!("listener failed: {error}")));
                    }
                    libp2p::swarm::SwarmEvent::ListenerClosed { reason, .. } => {
                        return Err(Error::Config(format!("listener closed: {reason:?}")));
                    }
                    _ => {}
                }
            }
            Ok(())
        };
        tokio::time::timeout(config.connect_timeout, wait)
            .await
            .map_err(|_| Error::Timeout {
                what: "listening",
                after: config.connect_timeout,
            })??;

        let control = swarm.behaviour().stream.new_control();
        let ttl = config.discovery_ttl.max(Duration::from_millis(1));
        let shared = Arc::new(Shared {
            pool: Arc::new(ConnectionPool::new(config.pool)),
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
        });
        let (command_tx, command_rx) = mpsc::channel(config.command_buffer.max(1));
        let (host_reply_tx, host_reply_rx) = mpsc::channel(config.command_buffer.max(1));
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (shutdown, _) = watch::channel(false);
        let event_loop = EventLoop {
            swarm,
            commands: command_rx,
            host_replies: host_reply_rx,
            host_reply_tx,
            events: events.clone(),
            shared: Arc::clone(&shared),
            host: host.clone(),
            pending_caps: HashMap::new(),
            pending_job: HashMap::new(),
            pending_result: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_queries: HashMap::new(),
            pending_dials: HashMap::new(),
        };
        let shutdown_rx = shutdown.subscribe();
        tokio::spawn(async move {
            event_loop.run().await;
        });
        let network = Self {
            inner: Arc::new(Inner {
                peer_id,
                config,
                commands: command_tx,
                control,
                registry,
                shared,
                events,
                shutdown,
                #[cfg(feature = "fault-injection")]
                faults: Arc::default(),
            }),
        };
        if let Some(host) = host {
            crate::stream::spawn_host(
                network.clone_control(),
                host,
                &network.inner.config,
                network.inner.shared.pool.clone(),
                shutdown_rx,
                #[cfg(feature = "fault-injection")]
                network.inner.faults.clone(),
            )?;
        }
        for addr in network.inner.config.bootstrap_peers.clone() {
            // A bootstrap node that is down must not stop this one from starting.
            if let Err(e) = network.dial(addr.clone()).await {
                tracing::warn!(%addr, error = %e, "bootstrap peer unreachable");
            }
        }
        Ok(network)
    }

    /// Makes every stream this node serves from now on commit `fault` (`None` heals it).
    /// Only with the `fault-injection` feature, for tests of how clients cope.
    #[cfg(feature = "fault-injection")]
    pub fn inject_stream_fault(&self, fault: Option<crate::fault::StreamFault>) {
        self.inner.faults.set(fault);
    }

    pub(crate) fn clone_control(&self) -> libp2p_stream::Control {
        self.inner.control.clone()
    }

    pub(crate) fn config(&self) -> &P2pConfig {
        &self.inner.config
    }

    pub(crate) fn registry(&self) -> &dyn PeerRegistry {
        self.inner.registry.as_ref()
    }

    pub(crate) fn pool(&self) -> &Arc<ConnectionPool> {
        &self.inner.shared.pool
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    async fn call_timeout<T>(
        &self,
        what: &'static str,
        after: Duration,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        tokio::time::timeout(after, self.call(make))
            .await
            .map_err(|_| Error::Timeout { what, after })?
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The addresses this node listens on, each with `/p2p/<peer id>` appended (ready to be
    /// another node's bootstrap address).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        let addrs = self.call(|reply| Command::ListenAddrs { reply }).await?;
        Ok(addrs
            .into_iter()
            .map(|a| a.with_p2p(self.inner.peer_id).unwrap_or_else(|a| a))
            .collect())
    }

    /// Network events as a stream. Bounded: a subscriber that falls behind skips events.
    pub fn events(&self) -> impl Stream<Item = NetworkEvent> + Send + 'static {
        let rx = self.inner.events.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Dials an address (with `/p2p/<peer id>` it completes once connected to that peer).
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        let timeout = self.inner.config.connect_timeout;
        self.call_timeout("dial", timeout, |reply| Command::Dial { addr, reply })
            .await
    }

    /// Makes sure a connection to `peer` is open, dialing it at the addresses the DHT knows
    /// if needed; counts a pool hit or miss.
    pub async fn connect(&self, peer: PeerId) -> Result<()> {
        let timeout = self.inner.config.connect_timeout;
        self.call_timeout("connect", timeout, |reply| Command::Connect { peer, reply })
            .await
    }

    /// Closes every connection to `peer`.
    pub async fn disconnect(&self, peer: PeerId) -> Result<()> {
        self.inner
            .commands
            .send(Command::Disconnect { peer })
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// Runs a Kademlia bootstrap through the known peers (those from the configuration and
    /// any dialed since) and waits for it to finish.
    pub async fn bootstrap(&self) -> Result<()> {
        let timeout = self.inner.config.query_timeout;
        self.call_timeout("bootstrap", timeout, |reply| Command::Bootstrap { reply })
            .await
    }

    /// Announces in the DHT that this node provides `model`.
    pub async fn advertise(&self, model: &ModelId) -> Result<()> {
        let key = provider_key(model);
        let timeout = self.inner.config.query_timeout;
        self.call_timeout("advertise", timeout, |reply| Command::StartProviding {
            key,
            reply,
        })
        .await
    }

    /// Stops announcing `model` (the local record goes at once; remote ones expire).
    pub async fn stop_advertising(&self, model: &ModelId) -> Result<()> {
        let key = provider_key(model);
        self.inner
            .commands
            .send(Command::StopProviding { key })
            .await
            .map_err(|_| Error::Shutdown)
    }

    /// The DHT's providers of `model` (unverified peer ids, possibly including this node).
    pub async fn get_providers(&self, model: &ModelId) -> Result<Vec<PeerId>> {
        let key = provider_key(model);
        let timeout = self.inner.config.query_timeout;
        let found = self
            .call_timeout("get providers", timeout, |reply| Command::GetProviders {
                key,
                reply,
            })
            .await?;
        let mut peers: Vec<PeerId> = found.into_iter().collect();
        peers.sort();
        Ok(peers)
    }

    /// Asks `peer` for its capabilities, unverified (see [`Network::probe`]).
    pub async fn capabilities(&self, peer: PeerId) -> Result<CapabilitiesResponse> {
        let request = CapabilitiesRequest { token: None };
        let timeout = self.inner.config.request_timeout + self.inner.config.connect_timeout;
        self.call_timeout("capabilities request", timeout, |reply| {
            Command::Capabilities {
                peer,
                request,
                reply,
            }
        })
        .await
    }

    /// Fetches and verifies `peer`'s capabilities (signature, peer id, registry owner, active,
    /// and the model when given) and measures its latency: the ping round trip when known,
    /// the request's round trip otherwise.
    pub async fn probe(&self, peer: PeerId, model: Option<&ModelId>) -> Result<DiscoveredNode> {
        let start = Instant::now();
        let response = self.capabilities(peer).await?;
        let request_rtt = start.elapsed();
        let verified = verify_capabilities(
            &response,
            &peer,
            self.inner.config.chain_id,
            self.inner.registry.as_ref(),
            model,
        )
        .await;
        if let Err(e) = verified {
            self.inner.shared.nodes.invalidate(&peer).await;
            return Err(e);
        }
        let shared = &self.inner.shared;
        let latency = shared.rtt.get(&peer).map(|r| *r).unwrap_or(request_rtt);
        let addresses = shared
            .addrs
            .get(&peer)
            .map(|a| a.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        let history = shared
            .history
            .get(&response.capabilities.peer_id)
            .map(|h| *h)
            .unwrap_or_default();
        Ok(DiscoveredNode {
            capabilities: response.capabilities,
            addresses,
            latency,
            history,
        })
    }

    /// Verified providers matching `query`: from the cache while it is fresh, otherwise
    /// through [`Network::refresh_providers`].
    pub async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        let shared = &self.inner.shared;
        let mut nodes = Vec::new();
        if let Some(peers) = shared.models.get(&query.model).await {
            for peer in peers.iter() {
                if let Some(node) = shared.nodes.get(peer).await {
                    nodes.push(node);
                }
            }
        }
        if nodes.is_empty() {
            nodes = self.refresh_providers(&query.model).await?;
        }
        let history = &shared.history;
        for node in &mut nodes {
            if let Some(h) = history.get(&node.capabilities.peer_id) {
                node.history = *h;
            }
        }
        Ok(nodes.into_iter().filter(|n| query.matches(n)).collect())
    }

    /// Asks the DHT for `model`'s providers, probes each (dial, verified capabilities,
    /// latency), caches the verified ones and returns them. Unverifiable or unreachable
    /// providers are dropped (and evicted from the cache).
    pub async fn refresh_providers(&self, model: &ModelId) -> Result<Vec<DiscoveredNode>> {
        let peers = self.get_providers(model).await?;
        let me = self.inner.peer_id;
        let results: Vec<(PeerId, Result<DiscoveredNode>)> =
            futures::stream::iter(peers.into_iter().filter(|p| *p != me))
                .map(|peer| async move { (peer, self.probe(peer, Some(model)).await) })
                .buffer_unordered(16)
                .collect()
                .await;
        let shared = &self.inner.shared;
        let mut nodes = Vec::new();
        for (peer, result) in results {
            match result {
                Ok(node) => {
                    shared.nodes.insert(peer, node.clone()).await;
                    nodes.push((peer, node));
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "provider dropped");
                    shared.nodes.invalidate(&peer).await;
                }
            }
        }
        nodes.sort_by_key(|(p, _)| *p);
        shared
            .models
            .insert(*model, Arc::new(nodes.iter().map(|(p, _)| *p).collect()))
            .await;
        Ok(nodes.into_iter().map(|(_, n)| n).collect())
    }

    /// Forgets cached discovery results (all models and nodes).
    pub fn clear_discovery_cache(&self) {
        self.inner.shared.nodes.invalidate_all();
        self.inner.shared.models.invalidate_all();
    }

    /// Records the outcome of a job with a host, used as its history in later discoveries.
    pub fn record_outcome(&self, host: &NodePeerId, success: bool) {
        let mut entry = self.inner.shared.history.entry(host.clone()).or_default();
        if success {
            entry.successes = entry.successes.saturating_add(1);
        } else {
            entry.failures = entry.failures.saturating_add(1);
        }
    }

    /// Sends a job message to `peer` (`/fabstir/job/1.0.0`) and returns its answer.
    pub async fn negotiate(&self, peer: PeerId, request: JobRequest) -> Result<JobResponse> {
        let timeout = self.inner.config.request_timeout + self.inner.config.connect_timeout;
        self.call_timeout("job request", timeout, |reply| Command::Job {
            peer,
            request,
            reply,
        })
        .await
    }

    /// Fetches a stored result from `peer` (`/fabstir/result/1.0.0`). `verify` checks the
    /// bytes against the CID (the storage layer's job: this crate has no CID code); bytes it
    /// refuses are an error. `Ok(None)` when the host does not have the result.
    pub async fn fetch_result(
        &self,
        peer: PeerId,
        cid: &str,
        verify: impl FnOnce(&str, &[u8]) -> bool,
    ) -> Result<Option<Vec<u8>>> {
        let request = ResultRequest {
            cid: cid.to_owned(),
        };
        let timeout = self.inner.config.request_timeout + self.inner.config.connect_timeout;
        let response = self
            .call_timeout("result request", timeout, |reply| Command::Result {
                peer,
                request,
                reply,
            })
            .await?;
        match response {
            ResultResponse::NotFound => Ok(None),
            ResultResponse::Found(bytes) if verify(cid, &bytes) => Ok(Some(bytes)),
            ResultResponse::Found(_) => Err(Error::Protocol {
                peer: peer.to_string(),
                reason: format!("result bytes do not match {cid}"),
            }),
        }
    }

    /// The connection pool's counters.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.shared.pool.stats()
    }

    /// Peers with an open connection, as the pool sees them.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.inner.shared.pool.connected_peers()
    }

    /// The core peer id of this node.
    pub fn node_peer_id(&self) -> Result<NodePeerId> {
        node_peer_id(&self.inner.peer_id)
    }

    /// Stops the node: the event loop ends, connections close, streams stop being served.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.inner.shutdown.send(true);
        self.call(|reply| Command::Shutdown { reply }).await
    }
}
