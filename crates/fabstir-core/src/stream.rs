//! What a client receives on a token stream once the network layer has handled the protocol
//! (framing, authentication, index and signature checks): the port type the network layer
//! hands up.

use crate::wire::{FinishReason, StreamDone, TokenBatch};

/// What a client receives on a token stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next tokens, in order (indices are checked).
    Tokens(TokenBatch),
    /// The job finished; the host's signature over it was verified. Nothing follows.
    Done(StreamDone),
}

/// What a client receives on a session prompt's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The next tokens, in order (indices are checked; the first of each prompt is 0).
    Tokens(TokenBatch),
    /// The prompt's tokens ended; the client signed its receipt for everything. Nothing
    /// follows.
    Done(PromptEnd),
}

/// How a session prompt ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptEnd {
    /// Tokens delivered for this prompt.
    pub tokens: u64,
    /// Counted tokens of this prompt: what it costs.
    pub counted: u64,
    /// Why it ended.
    pub finish: FinishReason,
    /// Counted tokens over the whole session that the client's newest receipt covers: what
    /// the host can be paid for so far.
    pub receipted: u64,
}
