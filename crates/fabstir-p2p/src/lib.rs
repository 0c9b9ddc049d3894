//! Peer-to-peer networking for Fabstir on libp2p: bootstrap and Kademlia discovery of model
//! providers, signed capabilities, node ranking, a connection pool and authenticated token
//! streams.
//!
//! It depends on `fabstir-core` only. What it needs from the chain ("which address owns this
//! peer id, and is it active?") it takes through the core port [`PeerRegistry`], never from
//! `fabstir-contracts`. Ranking the discovered nodes is pure and lives beside the selection
//! criteria in `fabstir_core::ranking`.
//!
//! - [`Network`] is a `Clone` handle on one event loop task that owns the libp2p swarm
//!   (TCP, QUIC, WebSocket; Noise; Yamux; Identify; Ping; Kademlia under
//!   `/fabstir/kad/1.0.0`; the request-response protocols and `/fabstir/stream/1.0.0`).
//!   Handles send commands with oneshot replies over a bounded channel.
//! - A host passes a [`HostService`] to [`Network::spawn`]; the network layer does framing,
//!   challenge-response authentication and token batching, the service decides.
//! - A client calls [`Network::find_providers`] (DHT, verified capabilities, latency, cached),
//!   ranks the result, [`Network::negotiate`]s, and [`Network::open_stream`]s with a
//!   [`ClientSigner`].
//! - [`ConnectionPool`] is pure and tested without a swarm.
//! - Behind the `test-utils` feature, `testing::TestHost` is a configurable host for tests and
//!   benchmarks: scripted, or faults (forged capabilities, a crash after quoting) over another
//!   service.
//!
//! The wire format is described in `docs/PROTOCOL.md`.

mod behaviour;
mod codec;
mod config;
mod dht;
mod error;
mod event_loop;
#[cfg(feature = "fault-injection")]
pub mod fault;
mod frame;
mod network;
mod pool;
mod registry;
mod results;
mod service;
mod shared;
mod signer;
mod stream;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use behaviour::{IDENTIFY_PROTOCOL, agent_version};
pub use codec::{ResultRequest, ResultResponse};
pub use config::{ConnectionLimits, P2pConfig, PoolConfig, StreamConfig};
pub use dht::{provider_key, provider_key_bytes};
pub use error::{Error, Result};
/// The registry port and its in-memory version, from `fabstir-core` (re-exported because
/// [`Network::spawn`] takes one).
pub use fabstir_core::{InMemoryRegistry, PeerRegistry};
pub use network::Network;
pub use pool::{ConnectionPool, PoolLease, PoolStats};
pub use registry::{libp2p_peer_id, node_peer_id, sign_capabilities, verify_capabilities};
pub use results::{MAX_RESULT_REQUEST_VALIDITY, RESULT_REQUEST_VALIDITY};
pub use service::{ClientProof, HostService, SessionGrant, StreamSink};
pub use shared::NetworkEvent;
pub use signer::ClientSigner;
pub use stream::{ClientStream, Events, SessionEvent, SessionStream, StreamEvent};

/// The libp2p types this crate's API uses, re-exported so that callers agree on one version.
pub use libp2p::{self, Multiaddr, PeerId, identity::Keypair};
