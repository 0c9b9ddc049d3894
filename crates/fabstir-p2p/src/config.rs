//! Configuration of a network node: where to listen, whom to bootstrap from, limits and
//! timeouts. Every field has a default; tests and the node override what they need.

use std::time::Duration;

use fabstir_core::primitives::Address;
use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// Configuration of a [`Network`](crate::Network).
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Addresses to listen on (TCP, QUIC and WebSocket by default, all interfaces, any port).
    pub listen_addrs: Vec<Multiaddr>,
    /// Multiaddresses of bootstrap nodes, each ending in `/p2p/<peer id>`.
    pub bootstrap_peers: Vec<Multiaddr>,
    /// Chain id covered by identity and client-auth signatures.
    pub chain_id: u64,
    /// The JobMarketplace address covered by client-auth signatures.
    pub marketplace: Address,
    /// Connection pool limits.
    pub pool: PoolConfig,
    /// Hard limits on connections and requests, applied before any protocol runs.
    pub limits: ConnectionLimits,
    /// How long verified providers are cached.
    pub discovery_ttl: Duration,
    /// How long probing a model's providers may take once one of them is verified: providers
    /// that have not answered by then (slow, or fake ones that never will) are left out of
    /// this discovery, so a crowd of them cannot hold it up.
    pub discovery_deadline: Duration,
    /// Timeout of one request-response exchange (capabilities, job, result).
    pub request_timeout: Duration,
    /// Timeout of a dial.
    pub connect_timeout: Duration,
    /// Timeout of one DHT query.
    pub query_timeout: Duration,
    /// Token stream settings.
    pub stream: StreamConfig,
    /// Capacity of the command channel from handles to the event loop.
    pub command_buffer: usize,
    /// Capacity of the event broadcast channel (slow subscribers skip events).
    pub event_buffer: usize,
}

impl Default for P2pConfig {
    fn default() -> Self {
        let parse = |s: &str| s.parse::<Multiaddr>().ok();
        Self {
            listen_addrs: [
                "/ip4/0.0.0.0/tcp/0",
                "/ip4/0.0.0.0/udp/0/quic-v1",
                "/ip4/0.0.0.0/tcp/0/ws",
            ]
            .into_iter()
            .filter_map(parse)
            .collect(),
            bootstrap_peers: Vec::new(),
            chain_id: 31_337,
            marketplace: Address::zero(),
            pool: PoolConfig::default(),
            limits: ConnectionLimits::default(),
            discovery_ttl: Duration::from_secs(5 * 60),
            discovery_deadline: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
            stream: StreamConfig::default(),
            command_buffer: 256,
            event_buffer: 256,
        }
    }
}

impl P2pConfig {
    /// A configuration listening on one loopback TCP port chosen by the OS: what tests use.
    pub fn loopback() -> Self {
        Self {
            listen_addrs: "/ip4/127.0.0.1/tcp/0".parse().into_iter().collect(),
            ..Self::default()
        }
    }
}

/// Hard limits on connections (libp2p's `connection_limits`: a connection over them is
/// refused while it is being established) and on requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Connections established at once, in all.
    pub max_established: u32,
    /// Connections established at once with one peer.
    pub max_established_per_peer: u32,
    /// Incoming connections being set up (before the peer is known) at once.
    pub max_pending_incoming: u32,
    /// Requests (capabilities, negotiation, results) in flight on one connection; with the
    /// per-peer connection limit this bounds one peer's requests.
    pub max_requests_per_connection: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_established: 1024,
            max_established_per_peer: 4,
            max_pending_incoming: 128,
            max_requests_per_connection: 64,
        }
    }
}

/// Connection pool limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most connections kept open at once.
    pub max_connections: usize,
    /// Connections unused this long are closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 50,
            idle_timeout: Duration::from_secs(5 * 60),
        }
    }
}

/// Settings of `/fabstir/stream/1.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Tokens the producer may run ahead of the writer before it waits (the coalescing
    /// window: a slow reader gets batches of up to this many tokens).
    pub token_buffer: usize,
    /// Most tokens in one frame; 1 disables coalescing.
    pub max_batch_tokens: usize,
    /// Streams a host serves at once (authorized ones: a handshake holds none); further ones
    /// get an `Unavailable` error frame.
    pub max_concurrent: usize,
    /// Of those, the most one peer may hold.
    pub max_streams_per_peer: usize,
    /// Handshakes (streams not yet authorized) a host runs at once; further streams get an
    /// `Unavailable` error frame before any challenge. Each lasts at most two
    /// `handshake_timeout`s and the service's check.
    pub max_handshakes: usize,
    /// Of those, the most one peer may hold.
    pub max_handshakes_per_peer: usize,
    /// How long a challenge nonce stays valid.
    pub challenge_ttl: Duration,
    /// Outstanding challenges kept at most.
    pub challenge_capacity: usize,
    /// How long either side waits for the other's next handshake frame.
    pub handshake_timeout: Duration,
    /// How long a client waits for the next frame once tokens flow (a stalled stream), and
    /// how long a host waits for a client that stopped reading or stopped sending receipts.
    pub stall_timeout: Duration,
    /// Host: the credit window, the most counted tokens streamed ahead of the client's newest
    /// receipt (what the host risks). At `r` tokens/s and a round trip of `t` seconds a
    /// window above `r x t` does not throttle the stream (the client receipts every half
    /// window): 512 covers 3,000 tokens/s over 100 ms with room.
    pub credit_window: u32,
    /// Client: the largest credit window accepted (what the client risks paying for without
    /// having it); a host asking more is refused.
    pub max_credit_window: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            token_buffer: 256,
            max_batch_tokens: 256,
            max_concurrent: 64,
            max_streams_per_peer: 32,
            max_handshakes: 256,
            max_handshakes_per_peer: 32,
            challenge_ttl: Duration::from_secs(30),
            challenge_capacity: 4096,
            handshake_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            credit_window: 512,
            max_credit_window: 1024,
        }
    }
}
