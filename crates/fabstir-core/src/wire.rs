//! The Fabstir P2P wire protocol: versioned messages and their bincode encoding under explicit
//! size limits, plus the length-prefixed framing of the token stream.
//!
//! Every message is encoded as bincode (little-endian, variable-length integers, as produced by
//! `bincode::DefaultOptions`) of `(version: u16, message)`. A decoder checks the size limit
//! *before* reading, rejects a version it does not speak, and rejects trailing bytes. Decoding
//! untrusted bytes never panics and never allocates more than the limit.
//!
//! | protocol | request | response |
//! |---|---|---|
//! | `/fabstir/capabilities/1.0.0` | [`CapabilitiesRequest`] | [`CapabilitiesResponse`] |
//! | `/fabstir/job/1.0.0` | [`NegotiationRequest`] | [`NegotiationResponse`] |
//! | `/fabstir/stream/1.0.0` | frames of [`ClientFrame`] | frames of [`HostFrame`] |
//! | `/fabstir/session/1.0.0` | the same frames, with the session ones ([`session`]) | |
//!
//! Stream frames are `u32` big-endian length followed by that many bytes of an encoded message
//! ([`encode_frame`], [`FrameDecoder`]). `docs/PROTOCOL.md` describes the exchange in full.

use bincode::Options;
use ethers_core::types::{Address, H256};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::amount::TokenAmount;
use crate::cid::Cid;
use crate::ids::{JobId, ModelId};
use crate::node::NodeCapabilities;
use crate::receipt::SignedReceipt;
use crate::{Error, Result};

pub mod session;

pub use session::{
    ChatMessage, ChatRole, FinishReason, PromptDone, PromptInput, SESSION_PROTOCOL, SessionEnding,
    SessionPrompt, SessionReady, plain_chat_template,
};

/// The wire protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Protocol name of capability queries.
pub const CAPABILITIES_PROTOCOL: &str = "/fabstir/capabilities/1.0.0";
/// Protocol name of job negotiation.
pub const JOB_PROTOCOL: &str = "/fabstir/job/1.0.0";
/// Protocol name of authenticated token streams.
pub const STREAM_PROTOCOL: &str = "/fabstir/stream/1.0.0";
/// Protocol name of result retrieval by CID.
pub const RESULT_PROTOCOL: &str = "/fabstir/result/1.0.0";
/// Kademlia protocol name of the Fabstir DHT.
pub const KAD_PROTOCOL: &str = "/fabstir/kad/1.0.0";

/// Largest prompt accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;
/// Largest stream frame payload accepted, in bytes.
pub const MAX_FRAME_LEN: usize = MAX_PROMPT_BYTES + 4 * 1024;
/// Bytes of the stream frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;
/// Longest text of one streamed token, in bytes (a vocabulary piece is a few bytes; a client
/// refuses a stream with a longer one, so what it buffers is bounded by the tokens it asked
/// for).
pub const MAX_TOKEN_TEXT_BYTES: usize = 1024;
/// Largest frame payload read before a stream is authenticated (the challenge and its
/// answer are about 150 bytes): a stranger cannot make a host allocate more than this.
pub const MAX_HANDSHAKE_FRAME_LEN: usize = 1024;

/// A message of the wire protocol with its own size limit.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// Largest encoded size accepted for this message, in bytes.
    const MAX_SIZE: usize;
}

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(u64::try_from(limit).unwrap_or(u64::MAX))
        .reject_trailing_bytes()
}

/// Encodes a message with the protocol version in front. Fails if the result would exceed
/// the message's limit (an oversized message is never sent).
pub fn encode<T: WireMessage>(message: &T) -> Result<Vec<u8>> {
    options(T::MAX_SIZE)
        .serialize(&(PROTOCOL_VERSION, message))
        .map_err(|e| match *e {
            bincode::ErrorKind::SizeLimit => Error::Oversized {
                len: options(usize::MAX)
                    .serialized_size(&(PROTOCOL_VERSION, message))
                    .ok()
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(usize::MAX),
                limit: T::MAX_SIZE,
            },
            other => Error::Malformed(other.to_string()),
        })
}

/// Decodes a message, checking size, version and trailing bytes.
pub fn decode<T: WireMessage>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > T::MAX_SIZE {
        return Err(Error::Oversized {
            len: bytes.len(),
            limit: T::MAX_SIZE,
        });
    }
    let malformed = |e: bincode::Error| Error::Malformed(e.to_string());
    // The version is read alone first so that a newer peer gets a clear answer rather than
    // a parse error on a layout this build does not know.
    let version: u16 = bincode::DefaultOptions::new()
        .with_limit(8)
        .allow_trailing_bytes()
        .deserialize(bytes)
        .map_err(malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let (_, message): (u16, T) = options(T::MAX_SIZE).deserialize(bytes).map_err(malformed)?;
    Ok(message)
}

/// Encodes a message as a stream frame: 4-byte big-endian length, then the message.
pub fn encode_frame<T: WireMessage>(message: &T) -> Result<Vec<u8>> {
    let payload = encode(message)?;
    let len = u32::try_from(payload.len()).map_err(|_| Error::Oversized {
        len: payload.len(),
        limit: MAX_FRAME_LEN,
    })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Reads a frame header: the payload length, checked against `limit` before anything is
/// allocated for it.
pub fn frame_len(header: [u8; FRAME_HEADER_LEN], limit: usize) -> Result<usize> {
    let len = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
    if len > limit {
        return Err(Error::Oversized { len, limit });
    }
    if len == 0 {
        return Err(Error::Malformed("empty frame".into()));
    }
    Ok(len)
}

/// An incremental decoder of stream frames for byte-oriented transports: feed it bytes as they
/// arrive, take complete messages out. A bad frame is an error and the stream should be
/// dropped; the decoder never buffers more than one frame's limit.
#[derive(Debug)]
pub struct FrameDecoder<T> {
    buffer: Vec<u8>,
    limit: usize,
    _message: std::marker::PhantomData<fn() -> T>,
}

impl<T: WireMessage> Default for FrameDecoder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: WireMessage> FrameDecoder<T> {
    /// A decoder for frames of `T`, limited by `T::MAX_SIZE` and [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self {
            buffer: Vec::new(),
            limit: T::MAX_SIZE.min(MAX_FRAME_LEN),
            _message: std::marker::PhantomData,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or an error for an
    /// oversized or malformed frame.
    pub fn next_message(&mut self) -> Result<Option<T>> {
        let Some(header) = self.buffer.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = frame_len(*header, self.limit)?;
        let end = FRAME_HEADER_LEN + len;
        if self.buffer.len() < end {
            return Ok(None);
        }
        let message = decode(&self.buffer[FRAME_HEADER_LEN..end]);
        self.buffer.drain(..end);
        message.map(Some)
    }

    /// Bytes received but not yet decoded (a non-empty remainder at end of stream means the
    /// last frame was truncated).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

// ---------------------------------------------------------------------------------------------
// /fabstir/capabilities/1.0.0

/// Asks a host for its capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitiesRequest {
    /// Only report prices for this payment token (zero address for ETH), or all when `None`.
    pub token: Option<Address>,
}

impl WireMessage for CapabilitiesRequest {
    const MAX_SIZE: usize = 256;
}

/// A host's capabilities with its identity signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilitiesResponse {
    /// What the host offers.
    pub capabilities: NodeCapabilities,
    /// The chain the identity signature is for.
    pub chain_id: u64,
    /// EIP-191 signature by `capabilities.eth_address` over
    /// [`identity_message`](crate::auth::identity_message)`(chain_id, peer_id, eth_address)`.
    pub identity_signature: Vec<u8>,
}

impl WireMessage for CapabilitiesResponse {
    const MAX_SIZE: usize = 64 * 1024;
}

// ---------------------------------------------------------------------------------------------
// /fabstir/job/1.0.0

/// A client's job message to a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiationRequest {
    /// Asks for a quote before anything goes on chain.
    Quote(QuoteRequest),
    /// Tells the host a job naming it was posted; the host answers whether it will claim it.
    Posted {
        /// The posted job's id.
        job: JobId,
    },
}

impl WireMessage for NegotiationRequest {
    const MAX_SIZE: usize = 1024;
}

/// The terms a client proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// The model to run.
    pub model: ModelId,
    /// Most tokens wanted.
    pub max_tokens: u32,
    /// The payment token (zero address for ETH).
    pub token: Address,
    /// The most the client offers per token, in base units.
    pub offered_price_per_token: TokenAmount,
    /// `keccak256(prompt)`; the prompt itself follows on the authenticated stream.
    pub prompt_hash: H256,
    /// The client's address (the job's poster).
    pub client: Address,
}

/// A host's answer to a job message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NegotiationResponse {
    /// The host's terms for a [`QuoteRequest`].
    Quote(Quote),
    /// The host will claim the posted job.
    Accepted {
        /// The job.
        job: JobId,
    },
    /// The host declines.
    Rejected {
        /// Why, as a code.
        reason: RejectReason,
        /// Why, for people.
        message: String,
    },
}

impl WireMessage for NegotiationResponse {
    const MAX_SIZE: usize = 4 * 1024;
}

/// A host's quote: post the job on these terms, naming this host, before `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The host's address, to name in the job.
    pub host: Address,
    /// The model.
    pub model: ModelId,
    /// Price per token in the payment token's base units.
    pub price_per_token: TokenAmount,
    /// The payment token.
    pub token: Address,
    /// Most tokens the host will generate.
    pub max_tokens: u32,
    /// Unix time (seconds) until which the host honours the quote.
    pub valid_until: u64,
    /// The credit window the host streams with (see [`AuthChallenge::credit_window`]).
    pub credit_window: u32,
}

/// Why a host declines a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// The host does not serve the model.
    UnknownModel,
    /// The host does not accept the payment token.
    TokenNotAccepted,
    /// The offered price is below the host's.
    PriceTooLow,
    /// More tokens than the host generates per job.
    TooManyTokens,
    /// The host is at capacity.
    Busy,
    /// The posted job does not match the quote (terms, host or prompt hash).
    TermsMismatch,
    /// The posted job was not found on chain.
    JobNotFound,
}

// ---------------------------------------------------------------------------------------------
// /fabstir/stream/1.0.0

/// Frames the client sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// The answer to the host's [`AuthChallenge`].
    Auth(AuthResponse),
    /// The prompt, sent only after the host accepted the authentication.
    Prompt(PromptFrame),
    /// Stop generating; the host ends the stream.
    Cancel,
    /// A receipt for the tokens received so far (cumulative), after a batch the client
    /// checked; the final one answers `Done`.
    Receipt(SignedReceipt),
    /// On a session stream: the prompt, sent after [`HostFrame::SessionReady`].
    SessionPrompt(SessionPrompt),
    /// On a session stream, instead of a prompt: the client is done; the host closes the
    /// session on chain with the newest receipt and answers [`HostFrame::SessionEnding`].
    EndSession,
}

impl WireMessage for ClientFrame {
    const MAX_SIZE: usize = MAX_FRAME_LEN;
}

/// The client's signed answer to a challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResponse {
    /// The job the client wants served.
    pub job: JobId,
    /// The nonce being answered.
    pub nonce: [u8; 32],
    /// EIP-191 signature over
    /// [`client_auth_message`](crate::auth::client_auth_message)`(chain, marketplace, job, host, nonce)`.
    pub signature: Vec<u8>,
}

/// The prompt and sampling parameters. Sampling values are integers in thousandths so that the
/// encoding is exact: `temperature_milli = 0` is greedy, `top_p_milli = 1000` disables top-p.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptFrame {
    /// The prompt; its keccak256 must equal the job's on-chain prompt hash.
    pub prompt: String,
    /// Temperature x 1000.
    pub temperature_milli: u32,
    /// Top-p x 1000.
    pub top_p_milli: u32,
    /// Sampling seed.
    pub seed: u64,
}

/// Frames the host sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostFrame {
    /// A fresh nonce the client must sign.
    Challenge(AuthChallenge),
    /// Authentication succeeded; the host now reads the prompt.
    Authenticated,
    /// Generated tokens.
    Tokens(TokenBatch),
    /// The job finished: the result is stored and will be submitted on chain.
    Done(StreamDone),
    /// The stream ends with an error.
    Error(StreamError),
    /// On a session stream, instead of `Authenticated`: where the session resumes.
    SessionReady(SessionReady),
    /// On a session stream, instead of `Done`: the prompt's tokens ended.
    PromptDone(PromptDone),
    /// On a session stream: the answer to [`ClientFrame::EndSession`].
    SessionEnding(SessionEnding),
}

impl WireMessage for HostFrame {
    const MAX_SIZE: usize = MAX_FRAME_LEN;
}

/// A host's authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthChallenge {
    /// 32 random bytes, single-use.
    pub nonce: [u8; 32],
    /// Unix time (seconds) after which the nonce is refused.
    pub expires_at: u64,
    /// The host's Ethereum address (part of the signed message).
    pub host: Address,
    /// The credit window: the host never runs more than this many counted tokens ahead of
    /// the client's newest receipt. The client refuses a window above its own cap.
    pub credit_window: u32,
}

/// A batch of consecutive tokens. Batches hold one token each while the client keeps up; the
/// host coalesces tokens into bigger batches when the client reads slower than it generates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBatch {
    /// Index of the first token in the batch (0 for the first token of the job).
    pub first_index: u64,
    /// The tokens, in order.
    pub tokens: Vec<StreamToken>,
}

impl TokenBatch {
    /// The batch's text: the tokens' text concatenated.
    pub fn text(&self) -> String {
        self.tokens.iter().map(|t| t.text.as_str()).collect()
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamToken {
    /// The token id in the model's vocabulary.
    pub id: u32,
    /// The decoded text (empty when the host has no vocabulary for the model).
    pub text: String,
}

/// The end of a successful stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDone {
    /// CID (CIDv1, raw, sha2-256) of the full result text, in its text form on the wire.
    #[serde(with = "crate::cid::text")]
    pub result_cid: Cid,
    /// Tokens generated (what the host will claim payment for).
    pub tokens_used: u64,
    /// EIP-191 signature by the host over
    /// [`result_message`](crate::auth::result_message)`(chain, job, cid, tokens_used)`.
    pub signature: Vec<u8>,
}

/// A stream error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// What kind of error.
    pub code: StreamErrorCode,
    /// Details for people.
    pub message: String,
}

/// Codes of stream errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StreamErrorCode {
    /// The client's signature did not prove it is the job's client.
    AuthFailed,
    /// The challenge expired or was already used.
    ChallengeExpired,
    /// The prompt's hash is not the job's prompt hash.
    PromptMismatch,
    /// No such job, or not claimed by this host.
    UnknownJob,
    /// Inference failed.
    InferenceFailed,
    /// The client cancelled.
    Cancelled,
    /// A frame could not be decoded or came out of order.
    Malformed,
    /// The host is shutting down or overloaded.
    Unavailable,
    /// The job was served already: one payment buys one stream.
    AlreadyServed,
    /// The job is no longer claimed by this host on chain (expired, closing, released), or
    /// its deadline passed.
    JobClosed,
    /// A receipt was refused: not newer than the last, counting undelivered tokens, another
    /// transcript, or not signed by the job's client for this chain and marketplace.
    BadReceipt,
    /// The client stopped sending receipts: the window stayed full for the stall timeout.
    Unacknowledged,
    /// Another prompt of the session is streaming: one at a time.
    SessionBusy,
}

#[cfg(test)]
mod tests;
