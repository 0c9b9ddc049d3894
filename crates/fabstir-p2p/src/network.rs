//! The [`Network`] handle: a cheap `Clone` that talks to the event loop owning the swarm, and
//! the client-side operations built on it (discovery, capabilities, negotiation, results,
//! token streams).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabstir_core::cid::{Cid, cid_of};
use fabstir_core::wire::{
    CapabilitiesRequest, CapabilitiesResponse, NegotiationRequest, NegotiationResponse,
    PromptFrame, SESSION_PROTOCOL, STREAM_PROTOCOL, SessionEnding, SessionPrompt,
};
use fabstir_core::{DiscoveredNode, JobId, ModelId, NodePeerId, ProviderQuery, SessionId};
use futures::{Stream, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::behaviour::{build_swarm, listen};
use crate::codec::ResultResponse;
use crate::config::P2pConfig;
use crate::dht::provider_key;
use crate::event_loop::{Command, EventLoop, Outbound};
use crate::pool::PoolStats;
use crate::registry::{node_peer_id, verify_capabilities};
use crate::results::ResultScope;
use crate::service::HostService;
use crate::shared::{NetworkEvent, Shared};
use crate::signer::ClientSigner;
use crate::stream::{ClientStream, SessionStream};
use crate::stream::{client, host};
use crate::{Error, Result};
use fabstir_core::PeerRegistry;

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
        listen(&mut swarm, &config.listen_addrs, config.connect_timeout).await?;

        let control = swarm.behaviour().stream.new_control();
        let shared = Arc::new(Shared::new(config.pool, config.discovery_ttl));
        let (command_tx, command_rx) = mpsc::channel(config.command_buffer.max(1));
        let (events, _) = broadcast::channel(config.event_buffer.max(1));
        let (shutdown, _) = watch::channel(false);
        let results = ResultScope {
            chain_id: config.chain_id,
            marketplace: config.marketplace,
            host: node_peer_id(&peer_id)?,
        };
        let event_loop = EventLoop::new(
            swarm,
            command_rx,
            events.clone(),
            Arc::clone(&shared),
            host.clone(),
            results,
            config.command_buffer,
        );
        let shutdown_rx = shutdown.subscribe();
        tokio::spawn(event_loop.run());
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
            host::spawn_host(
                network.inner.control.clone(),
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
        self.call_timeout("capabilities request", timeout, |reply| Command::Request {
            peer,
            request: Outbound::Capabilities(request, reply),
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
            self.inner.shared.forget(&peer).await;
            return Err(e);
        }
        Ok(self
            .inner
            .shared
            .discovered(&peer, response.capabilities, request_rtt))
    }

    /// Verified providers matching `query`: from the cache while it is fresh, otherwise
    /// through [`Network::refresh_providers`].
    pub async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        let shared = &self.inner.shared;
        let mut nodes = shared.cached_providers(&query.model).await;
        if nodes.is_empty() {
            nodes = self.refresh_providers(&query.model).await?;
        }
        shared.refresh_history(&mut nodes);
        Ok(nodes.into_iter().filter(|n| query.matches(n)).collect())
    }

    /// Asks the DHT for `model`'s providers, probes each (dial, verified capabilities,
    /// latency), caches the verified ones and returns them. Unverifiable or unreachable
    /// providers are dropped (and evicted from the cache). Once one provider is verified, the
    /// others have until the discovery deadline to answer.
    pub async fn refresh_providers(&self, model: &ModelId) -> Result<Vec<DiscoveredNode>> {
        let peers = self.get_providers(model).await?;
        let me = self.inner.peer_id;
        let mut probes = futures::stream::iter(peers.into_iter().filter(|p| *p != me))
            .map(|peer| async move { (peer, self.probe(peer, Some(model)).await) })
            .buffer_unordered(16);
        let deadline = tokio::time::Instant::now() + self.inner.config.discovery_deadline;
        let shared = &self.inner.shared;
        let mut nodes = Vec::new();
        loop {
            let next = if nodes.is_empty() {
                probes.next().await
            } else {
                match tokio::time::timeout_at(deadline, probes.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::debug!(%model, verified = nodes.len(), "discovery deadline: the rest are left out");
                        break;
                    }
                }
            };
            let Some((peer, result)) = next else { break };
            match result {
                Ok(node) => {
                    shared.nodes.insert(peer, node.clone()).await;
                    nodes.push((peer, node));
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "provider dropped");
                    shared.forget(&peer).await;
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
        self.inner.shared.record_outcome(host, success);
    }

    /// Sends a job message to `peer` (`/fabstir/job/1.0.0`) and returns its answer.
    pub async fn negotiate(
        &self,
        peer: PeerId,
        request: NegotiationRequest,
    ) -> Result<NegotiationResponse> {
        let timeout = self.inner.config.request_timeout + self.inner.config.connect_timeout;
        self.call_timeout("job request", timeout, |reply| Command::Request {
            peer,
            request: Outbound::Job(request, reply),
        })
        .await
    }

    /// Fetches `job`'s stored result `cid` from `peer` (`/fabstir/result/1.0.0`) as the
    /// job's client `signer`, checking that the bytes hash to `cid`: bytes that do not are an
    /// error, and so is a host's refusal (the signer is not the job's client). `Ok(None)` when
    /// the host does not have the result.
    pub async fn fetch_result(
        &self,
        peer: PeerId,
        job: JobId,
        cid: &Cid,
        signer: &dyn ClientSigner,
    ) -> Result<Option<Vec<u8>>> {
        let scope = ResultScope {
            chain_id: self.inner.config.chain_id,
            marketplace: self.inner.config.marketplace,
            host: node_peer_id(&peer)?,
        };
        let request = scope.request(job, cid, signer).await?;
        let timeout = self.inner.config.request_timeout + self.inner.config.connect_timeout;
        let response = self
            .call_timeout("result request", timeout, |reply| Command::Request {
                peer,
                request: Outbound::Result(request, reply),
            })
            .await?;
        match response {
            ResultResponse::NotFound => Ok(None),
            ResultResponse::Refused => Err(Error::Remote {
                code: fabstir_core::wire::StreamErrorCode::AuthFailed,
                message: "the host serves this result only to its job's client".into(),
            }),
            ResultResponse::Found(bytes) if cid_of(&bytes) == *cid => Ok(Some(bytes)),
            ResultResponse::Found(_) => Err(Error::Protocol {
                peer: peer.to_string(),
                reason: format!("result bytes do not match {cid}"),
            }),
        }
    }

    /// Opens a raw `/fabstir/stream/1.0.0` stream to `peer` (dialing if needed), without the
    /// handshake: for diagnostics and protocol tests. Use [`Network::open_stream`] for jobs.
    pub async fn open_raw_stream(&self, peer: PeerId) -> Result<libp2p::Stream> {
        self.open_raw(peer, STREAM_PROTOCOL).await
    }

    /// Like [`Network::open_raw_stream`], for `/fabstir/session/1.0.0`.
    pub async fn open_raw_session_stream(&self, peer: PeerId) -> Result<libp2p::Stream> {
        self.open_raw(peer, SESSION_PROTOCOL).await
    }

    async fn open_raw(&self, peer: PeerId, protocol: &'static str) -> Result<libp2p::Stream> {
        self.connect(peer).await?;
        client::open_raw(self.inner.control.clone(), peer, protocol).await
    }

    fn client_context(&self) -> client::ClientContext<'_> {
        client::ClientContext {
            config: &self.inner.config,
            registry: self.inner.registry.as_ref(),
            pool: &self.inner.shared.pool,
        }
    }

    /// Opens an authenticated token stream for `job` to the host `peer`: answers its
    /// challenge with `signer` (after checking that the address the challenge names registered
    /// `peer`), sends `prompt`, and returns the stream of tokens. `signer` also signs the
    /// receipts for what arrives (see `docs/PROTOCOL.md`), so the stream keeps it.
    ///
    /// Refusals by the host come back as [`Error::Remote`] with its code (`AuthFailed`,
    /// `ChallengeExpired`, `UnknownJob`...).
    pub async fn open_stream(
        &self,
        peer: PeerId,
        job: JobId,
        signer: Arc<dyn ClientSigner>,
        prompt: PromptFrame,
    ) -> Result<ClientStream> {
        let stream = self.open_raw_stream(peer).await?;
        client::open(self.client_context(), stream, peer, job, signer, prompt).await
    }

    /// Sends one prompt on the open `session` with the host `peer` (a stream per prompt, no
    /// chain round trip): answers its challenge with `signer`, checks where the host resumes
    /// the session (a receipt `signer` signed), sends `prompt` and returns its tokens.
    /// `signer` receipts what arrives, cumulatively over the session.
    pub async fn open_session_stream(
        &self,
        peer: PeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
        prompt: SessionPrompt,
    ) -> Result<SessionStream> {
        let stream = self.open_raw_session_stream(peer).await?;
        client::open_session(self.client_context(), stream, peer, session, signer, prompt).await
    }

    /// Asks the host `peer` of `session` to end it: the host closes the session on chain with
    /// the newest receipt it holds (the rest of the deposit goes back to the client) and says
    /// what the close pays for.
    pub async fn end_session(
        &self,
        peer: PeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
    ) -> Result<SessionEnding> {
        let stream = self.open_raw_session_stream(peer).await?;
        client::end_session(self.client_context(), stream, peer, session, signer).await
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
