//! The event loop: the one task that owns the swarm. Handles send it [`Command`]s over a
//! bounded channel, each with a oneshot reply; it turns swarm events into replies, pool
//! decisions and [`NetworkEvent`]s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fabstir_core::clock::unix_now;
use fabstir_core::wire::{
    CapabilitiesRequest, CapabilitiesResponse, NegotiationRequest, NegotiationResponse,
};
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, ping};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::codec::{ResultRequest, ResultResponse};
use crate::results::ResultScope;
use crate::service::HostService;
use crate::shared::{NetworkEvent, Shared};
use crate::{Error, Result};

type Reply<T> = oneshot::Sender<Result<T>>;

/// A request from a handle to the event loop.
pub(crate) enum Command {
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Connect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Bootstrap {
        reply: Reply<()>,
    },
    StartProviding {
        key: RecordKey,
        reply: Reply<()>,
    },
    StopProviding {
        key: RecordKey,
    },
    GetProviders {
        key: RecordKey,
        reply: Reply<HashSet<PeerId>>,
    },
    /// A request-response request to `peer`.
    Request {
        peer: PeerId,
        request: Outbound,
    },
    Disconnect {
        peer: PeerId,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A request to another node on one of the request-response protocols, with its reply.
pub(crate) enum Outbound {
    Capabilities(CapabilitiesRequest, Reply<CapabilitiesResponse>),
    Job(NegotiationRequest, Reply<NegotiationResponse>),
    Result(ResultRequest, Reply<ResultResponse>),
}

/// A host's answer, computed off the loop, to send on a response channel.
pub(crate) enum HostReply {
    Capabilities(ResponseChannel<CapabilitiesResponse>, CapabilitiesResponse),
    Job(ResponseChannel<NegotiationResponse>, NegotiationResponse),
    Result(ResponseChannel<ResultResponse>, ResultResponse),
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    host_replies: mpsc::Receiver<HostReply>,
    host_reply_tx: mpsc::Sender<HostReply>,
    events: broadcast::Sender<NetworkEvent>,
    shared: Arc<Shared>,
    host: Option<Arc<dyn HostService>>,
    /// What result requests to this node are signed for.
    results: ResultScope,
    pending_caps: HashMap<OutboundRequestId, Reply<CapabilitiesResponse>>,
    pending_job: HashMap<OutboundRequestId, Reply<NegotiationResponse>>,
    pending_result: HashMap<OutboundRequestId, Reply<ResultResponse>>,
    pending_providers: HashMap<QueryId, (HashSet<PeerId>, Reply<HashSet<PeerId>>)>,
    pending_queries: HashMap<QueryId, Reply<()>>,
    pending_dials: HashMap<PeerId, Vec<Reply<()>>>,
}

impl EventLoop {
    /// A loop over `swarm` serving `commands`; with a `host` it answers inbound requests
    /// (off the loop, through a channel of `buffer` answers).
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NetworkEvent>,
        shared: Arc<Shared>,
        host: Option<Arc<dyn HostService>>,
        results: ResultScope,
        buffer: usize,
    ) -> Self {
        let (host_reply_tx, host_replies) = mpsc::channel(buffer.max(1));
        Self {
            swarm,
            commands,
            host_replies,
            host_reply_tx,
            events,
            shared,
            host,
            results,
            pending_caps: HashMap::new(),
            pending_job: HashMap::new(),
            pending_result: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_queries: HashMap::new(),
            pending_dials: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let idle = self.shared.pool.config().idle_timeout;
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone.
                    None => break,
                },
                Some(reply) = self.host_replies.recv() => self.on_host_reply(reply),
                _ = tick.tick() => {
                    for peer in self.shared.pool.take_idle(Instant::now()) {
                        tracing::debug!(%peer, "closing idle connection");
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                }
            }
        }
        tracing::debug!(peer = %self.swarm.local_peer_id(), "event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Dial { addr, reply } => {
                let peer = addr.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                    _ => None,
                });
                if let Some(peer) = peer {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if self.swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(()));
                        return;
                    }
                }
                match self.swarm.dial(addr.clone()) {
                    Ok(()) => match peer {
                        Some(peer) => self.pending_dials.entry(peer).or_default().push(reply),
                        None => {
                            let _ = reply.send(Ok(()));
                        }
                    },
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dial {
                            peer: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Connect { peer, reply } => {
                self.shared.pool.record_use(&peer, now);
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.pending_dials.entry(peer).or_default().push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dial {
                            peer: peer.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Bootstrap { reply } => match self.swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_queries.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Dht(format!("bootstrap: {e}"))));
                }
            },
            Command::StartProviding { key, reply } => {
                match self.swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        self.pending_queries.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(Error::Dht(format!("start providing: {e}"))));
                    }
                }
            }
            Command::StopProviding { key } => {
                self.swarm.behaviour_mut().kad.stop_providing(&key);
            }
            Command::GetProviders { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers.insert(id, (HashSet::new(), reply));
            }
            Command::Request { peer, request } => {
                self.shared.pool.record_use(&peer, now);
                let b = self.swarm.behaviour_mut();
                match request {
                    Outbound::Capabilities(request, reply) => {
                        let id = b.capabilities.send_request(&peer, request);
                        self.pending_caps.insert(id, reply);
                    }
                    Outbound::Job(request, reply) => {
                        let id = b.job.send_request(&peer, request);
                        self.pending_job.insert(id, reply);
                    }
                    Outbound::Result(request, reply) => {
                        let id = b.result.send_request(&peer, request);
                        self.pending_result.insert(id, reply);
                    }
                }
            }
            Command::Disconnect { peer } => {
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(Ok(self.swarm.listeners().cloned().collect()));
            }
            Command::Shutdown { .. } => {}
        }
    }

    fn on_host_reply(&mut self, reply: HostReply) {
        let b = self.swarm.behaviour_mut();
        // A failed send means the requester went away; nothing to do.
        let _ = match reply {
            HostReply::Capabilities(ch, r) => b.capabilities.send_response(ch, r).is_ok(),
            HostReply::Job(ch, r) => b.job.send_response(ch, r).is_ok(),
            HostReply::Result(ch, r) => b.result.send_response(ch, r).is_ok(),
        };
    }

    fn emit(&self, event: NetworkEvent) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.emit(NetworkEvent::Listening(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    if let Some(victim) = self.shared.pool.connected(peer_id, Instant::now()) {
                        tracing::debug!(%victim, "pool full: closing least recently used");
                        let _ = self.swarm.disconnect_peer_id(victim);
                    }
                    self.emit(NetworkEvent::Connected(peer_id));
                }
                for reply in self.pending_dials.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.shared.pool.disconnected(&peer_id);
                self.shared.rtt.remove(&peer_id);
                if cause.is_some() {
                    // Closed by an error rather than by us: the peer may be gone.
                    self.shared.forget(&peer_id).await;
                }
                self.emit(NetworkEvent::Disconnected(peer_id));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    self.shared.forget(&peer).await;
                    for reply in self.pending_dials.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(Error::Dial {
                            peer: peer.to_string(),
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in &info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, addr.clone());
                }
                self.shared.addrs.insert(peer_id, info.listen_addrs.clone());
                self.emit(NetworkEvent::Identified {
                    peer: peer_id,
                    agent: info.agent_version,
                });
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.shared.rtt.insert(peer, rtt);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => self.on_query(id, result, step.last),
            BehaviourEvent::Capabilities(event) => {
                if let Some((peer, _req, channel)) = self.on_request_response(event, caps_map).await
                {
                    self.answer(move |host| async move {
                        tracing::trace!(%peer, "capabilities request");
                        HostReply::Capabilities(channel, host.capabilities().await)
                    });
                }
            }
            BehaviourEvent::Job(event) => {
                if let Some((peer, req, channel)) = self.on_request_response(event, job_map).await {
                    self.answer(move |host| async move {
                        HostReply::Job(channel, host.job(peer, req).await)
                    });
                }
            }
            BehaviourEvent::Result(event) => {
                if let Some((peer, req, channel)) =
                    self.on_request_response(event, result_map).await
                {
                    let proof = self.results.proof(&req, unix_now());
                    self.answer(move |host| async move {
                        let resp = match proof {
                            Ok(proof) => host.result(req.job, &req.cid, &proof).await,
                            Err(_) => ResultResponse::Refused,
                        };
                        if resp == ResultResponse::Refused {
                            tracing::debug!(%peer, job = %req.job, "result request refused");
                        }
                        HostReply::Result(channel, resp)
                    });
                }
            }
            _ => {}
        }
    }

    /// Has the host compute an answer off the loop, which comes back as a [`HostReply`].
    /// Without a host the request goes unanswered.
    fn answer<F, Fut>(&self, respond: F)
    where
        F: FnOnce(Arc<dyn HostService>) -> Fut + Send + 'static,
        Fut: Future<Output = HostReply> + Send,
    {
        let Some(host) = self.host.clone() else {
            return;
        };
        let tx = self.host_reply_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(respond(host).await).await;
        });
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::GetProviders(result) => {
                if let Some((found, _)) = self.pending_providers.get_mut(&id)
                    && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
                {
                    found.extend(providers);
                }
                if last && let Some((found, reply)) = self.pending_providers.remove(&id) {
                    let _ = reply.send(Ok(found));
                }
            }
            QueryResult::StartProviding(result) => {
                if let Some(reply) = self.pending_queries.remove(&id) {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Dht(e.to_string())));
                }
            }
            QueryResult::Bootstrap(result) => {
                let failed = result.is_err();
                if (last || failed)
                    && let Some(reply) = self.pending_queries.remove(&id)
                {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| Error::Dht(e.to_string())));
                }
            }
            _ => {}
        }
    }

    /// Handles responses and failures of our requests; returns an inbound request to answer.
    async fn on_request_response<Req, Resp>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        which: fn(&mut Self) -> &mut HashMap<OutboundRequestId, Reply<Resp>>,
    ) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.shared.pool.touch(&peer, Instant::now());
                    Some((peer, request, channel))
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = which(self).remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                    None
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.shared.forget(&peer).await;
                if let Some(reply) = which(self).remove(&request_id) {
                    let _ = reply.send(Err(Error::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
                None
            }
            _ => None,
        }
    }
}

fn caps_map(l: &mut EventLoop) -> &mut HashMap<OutboundRequestId, Reply<CapabilitiesResponse>> {
    &mut l.pending_caps
}

fn job_map(l: &mut EventLoop) -> &mut HashMap<OutboundRequestId, Reply<NegotiationResponse>> {
    &mut l.pending_job
}

fn result_map(l: &mut EventLoop) -> &mut HashMap<OutboundRequestId, Reply<ResultResponse>> {
    &mut l.pending_result
}
