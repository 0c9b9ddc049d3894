//! What a client receives on a token stream once the network layer has handled the protocol
//! (framing, authentication, index and signature checks): the port type the network layer
//! hands up.

use crate::wire::{StreamDone, TokenBatch};

/// What a client receives on a token stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next tokens, in order (indices are checked).
    Tokens(TokenBatch),
    /// The job finished; the host's signature over it was verified. Nothing follows.
    Done(StreamDone),
}
