//! The error type of `fabstir-p2p`.

use std::time::Duration;

use fabstir_core::wire::StreamErrorCode;

/// Everything that can go wrong in the network layer. Variants are named after causes and
/// carry the values a caller needs to act (which peer, which limit, what the remote said).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A wire message could not be encoded or decoded (oversized, malformed, wrong version).
    #[error("wire: {0}")]
    Wire(#[from] fabstir_core::Error),
    /// An I/O error on a connection or stream.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A stream ended in the middle of a frame.
    #[error("stream truncated: {0}")]
    Truncated(String),
    /// The peer broke the protocol (unexpected frame, out-of-order tokens...).
    #[error("protocol violation by {peer}: {reason}")]
    Protocol {
        /// The peer, as text.
        peer: String,
        /// What it did wrong.
        reason: String,
    },
    /// The remote host ended the stream with an error frame.
    #[error("host error {code:?}: {message}")]
    Remote {
        /// The host's error code.
        code: StreamErrorCode,
        /// The host's explanation.
        message: String,
    },
    /// A host's capabilities could not be verified (signature, peer id, registry).
    #[error("unverified host {peer}: {reason}")]
    Unverified {
        /// The host's peer id, as text.
        peer: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The peer registry (the chain) could not be asked.
    #[error("peer registry: {0}")]
    Registry(#[from] fabstir_core::RegistryError),
    /// The client signer failed to sign.
    #[error(transparent)]
    Signer(#[from] fabstir_core::auth::SignerError),
    /// Dialing a peer failed.
    #[error("dial {peer} failed: {reason}")]
    Dial {
        /// The peer or address, as text.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A request-response exchange failed (timeout, unsupported protocol, connection closed).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer, as text.
        peer: String,
        /// Why.
        reason: String,
    },
    /// Opening a stream failed.
    #[error("opening a stream to {peer} failed: {reason}")]
    OpenStream {
        /// The peer, as text.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A DHT operation failed.
    #[error("DHT: {0}")]
    Dht(String),
    /// Something took longer than allowed.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The stream was cancelled.
    #[error("stream cancelled")]
    Cancelled,
    /// Invalid configuration (listen address, bootstrap address...).
    #[error("configuration: {0}")]
    Config(String),
    /// The network's event loop has stopped.
    #[error("the network event loop has stopped")]
    Shutdown,
}

/// `Result` with the p2p [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
