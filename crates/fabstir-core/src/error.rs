//! The error type of `fabstir-core`.

use crate::job::JobState;

/// Everything that can go wrong in the domain layer: parsing, validation, state transitions,
/// configuration and wire decoding. Variants carry the values a user needs to act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A job state transition that the state machine does not allow.
    #[error("illegal job state transition from {from} to {to}")]
    IllegalTransition {
        /// The state the job was in.
        from: JobState,
        /// The state that was asked for.
        to: JobState,
    },
    /// A decimal amount that could not be parsed.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An amount with more fractional digits than the token has decimals.
    #[error("amount {input:?} has more than {decimals} decimal places")]
    TooManyDecimals {
        /// The text that was given.
        input: String,
        /// The token's decimals.
        decimals: u8,
    },
    /// An amount that does not fit in 256 bits of base units.
    #[error("amount {input:?} overflows 256 bits of base units")]
    AmountOverflow {
        /// The text that was given.
        input: String,
    },
    /// An identifier (peer id, model id, address...) that could not be parsed.
    #[error("invalid {kind}: {reason}")]
    InvalidId {
        /// What kind of identifier it was.
        kind: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Configuration that could not be read or is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A wire message larger than the limit for its kind.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// The announced or actual length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A wire message from a protocol version this build does not speak.
    #[error("unsupported wire protocol version {found} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version found in the message.
        found: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// Bytes that are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A signature that is malformed or does not recover to an address.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// A job's escrow (`max_tokens x price_per_token`) does not fit in 256 bits.
    #[error("escrow overflows: max_tokens x price_per_token exceeds 256 bits")]
    EscrowOverflow,
    /// Ranking was given no candidates at all.
    #[error("no candidate nodes to rank")]
    NoCandidates,
    /// Ranking was given candidates but none passed the selection criteria.
    #[error("none of {candidates} candidate nodes match the selection criteria")]
    NoneMatch {
        /// How many candidates were considered.
        candidates: usize,
    },
}

/// `Result` with the core [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
