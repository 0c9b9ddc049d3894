//! The libp2p behaviour of a Fabstir node, how its swarm is built and how it starts listening.

use std::time::Duration;

use fabstir_core::wire::{
    CAPABILITIES_PROTOCOL, CapabilitiesRequest, CapabilitiesResponse, JOB_PROTOCOL, KAD_PROTOCOL,
    NegotiationRequest, NegotiationResponse, RESULT_PROTOCOL,
};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, connection_limits, identify, kad, noise, ping, tcp, yamux,
};

use crate::codec::{ResultRequest, ResultResponse, WireCodec};
use crate::config::P2pConfig;
use crate::{Error, Result};

/// The Identify protocol version of Fabstir nodes.
pub const IDENTIFY_PROTOCOL: &str = "/fabstir/id/1.0.0";

/// The Identify agent version of this build: `fabstir/<crate version>`.
pub fn agent_version() -> String {
    format!("fabstir/{}", env!("CARGO_PKG_VERSION"))
}

pub(crate) type CapabilitiesBehaviour =
    request_response::Behaviour<WireCodec<CapabilitiesRequest, CapabilitiesResponse>>;
pub(crate) type JobBehaviour =
    request_response::Behaviour<WireCodec<NegotiationRequest, NegotiationResponse>>;
pub(crate) type ResultBehaviour =
    request_response::Behaviour<WireCodec<ResultRequest, ResultResponse>>;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// First, so a connection over the limits is refused before another behaviour sees it.
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) capabilities: CapabilitiesBehaviour,
    pub(crate) job: JobBehaviour,
    pub(crate) result: ResultBehaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
}

fn request_response<Req, Resp>(
    protocol: &'static str,
    support: ProtocolSupport,
    timeout: Duration,
    max_streams: usize,
) -> request_response::Behaviour<WireCodec<Req, Resp>>
where
    Req: fabstir_core::wire::WireMessage + Send + Sync + 'static,
    Resp: fabstir_core::wire::WireMessage + Send + Sync + 'static,
{
    request_response::Behaviour::with_codec(
        WireCodec::default(),
        [(StreamProtocol::new(protocol), support)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(max_streams.max(1)),
    )
}

fn behaviour(key: &Keypair, config: &P2pConfig, host: bool) -> Behaviour {
    let peer_id = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(config.query_timeout);
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Every node serves the DHT: any node can be a bootstrap node.
    kad.set_mode(Some(kad::Mode::Server));
    // Plain peers only ask; hosts also answer.
    let support = if host {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    let timeout = config.request_timeout;
    let limits = config.limits;
    let streams = limits.max_requests_per_connection;
    Behaviour {
        limits: connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(limits.max_established))
                .with_max_established_per_peer(Some(limits.max_established_per_peer))
                .with_max_pending_incoming(Some(limits.max_pending_incoming)),
        ),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(agent_version()),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
        kad,
        capabilities: request_response(CAPABILITIES_PROTOCOL, support.clone(), timeout, streams),
        job: request_response(JOB_PROTOCOL, support.clone(), timeout, streams),
        result: request_response(RESULT_PROTOCOL, support, timeout, streams),
        stream: libp2p_stream::Behaviour::new(),
    }
}

/// Builds the swarm: TCP and QUIC, WebSocket for browsers, Noise, Yamux.
pub(crate) async fn build_swarm(
    key: Keypair,
    config: &P2pConfig,
    host: bool,
) -> Result<Swarm<Behaviour>> {
    let transport = |e: &dyn std::fmt::Display| Error::Config(format!("transport: {e}"));
    // Connections are closed by the pool; the swarm's own idle timeout only backs it up.
    let idle = config
        .pool
        .idle_timeout
        .saturating_add(Duration::from_secs(5));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| transport(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| transport(&e))?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(|e| transport(&e))?
        .with_behaviour(|key| behaviour(key, config, host))
        .map_err(|e| transport(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Listens on every address of `addrs` and returns once each listener has an address, so that
/// callers can hand them out; a listener that fails or closes first is an error.
pub(crate) async fn listen(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
    timeout: Duration,
) -> Result<()> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Config(format!("listen on {addr}: {e}")))?;
        listeners.push(id);
    }
    let wait = async {
        while !listeners.is_empty() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    listeners.retain(|l| *l != listener_id);
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(Error::Config(format!("listener failed: {error}")));
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(Error::Config(format!("listener closed: {reason:?}")));
                }
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| Error::Timeout {
            what: "listening",
            after: timeout,
        })?
}
