//! The host's side of the protocols: the network layer handles framing, authentication and
//! batching, and asks a [`HostService`] (implemented by the node) for every decision.

use async_trait::async_trait;
use fabstir_core::JobId;
use fabstir_core::SessionId;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    CapabilitiesResponse, FinishReason, NegotiationRequest, NegotiationResponse, PromptFrame,
    SessionEnding, SessionPrompt, StreamDone, StreamError, StreamErrorCode, StreamToken,
};
use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::codec::ResultResponse;
use crate::{Error, Result};

/// What a host node decides; the network layer calls it for each request.
#[async_trait]
pub trait HostService: Send + Sync + 'static {
    /// The host's Ethereum address: named in challenges, it must be the one that signs the
    /// capabilities and results.
    fn address(&self) -> Address;

    /// The host's signed capabilities (see [`sign_capabilities`](crate::sign_capabilities)).
    async fn capabilities(&self) -> CapabilitiesResponse;

    /// Answers a job message from `peer`: a quote, an acceptance or a rejection.
    async fn job(&self, peer: PeerId, request: NegotiationRequest) -> NegotiationResponse;

    /// Decides whether the client that answered the challenge with `proof` may be served
    /// `job`: the proof must be the job's client's on chain (an ECDSA signature recovering to
    /// it, or one its contract wallet accepts, see [`HostService::wallet_accepts`]) and the
    /// job claimed by this host. Answers the job's client. Called before any prompt is read.
    async fn authorize(&self, job: JobId, proof: &ClientProof) -> Result<Address, StreamError>;

    /// Whether `wallet`, a contract wallet, accepts `signature` over `digest` (ERC-1271
    /// `isValidSignature`, as the marketplace checks receipts on chain). Asked for receipts
    /// that do not recover to the job's client by ECDSA. The default refuses: a host that
    /// cannot ask the chain serves clients with plain keys only.
    async fn wallet_accepts(&self, wallet: Address, digest: H256, signature: &[u8]) -> bool {
        let _ = (wallet, digest, signature);
        false
    }

    /// Runs an authorized job: checks the prompt against the job's prompt hash, generates,
    /// sends each token to `sink` as it is produced, and returns the final frame. When
    /// [`StreamSink::send`] fails the client has gone or cancelled: stop and return.
    async fn run(
        &self,
        job: JobId,
        client: Address,
        prompt: PromptFrame,
        sink: StreamSink,
    ) -> Result<StreamDone, StreamError>;

    /// Settles `job` once its stream ended, however it ended, with the newest receipt the
    /// client signed. The network layer checked it: signed by the job's client for this chain
    /// and marketplace, counting no more than was delivered, with the host's own transcript.
    /// `None`: the client signed nothing (it received nothing, or stopped at once), so nothing
    /// is owed and the job should be given back.
    async fn settle(&self, job: JobId, receipt: Option<SignedReceipt>);

    /// Decides whether the client that answered a session stream's challenge with `proof` may
    /// prompt `session`: the session is open on chain with this host, the proof is its
    /// client's, and no other prompt of it is streaming. The grant says where the transcript
    /// resumes (the newest receipt the host holds) and how many more counted tokens the
    /// deposit pays for. Every grant is followed by exactly one
    /// [`HostService::session_stream_ended`]. The default serves no sessions.
    async fn authorize_session(
        &self,
        session: SessionId,
        proof: &ClientProof,
    ) -> Result<SessionGrant, StreamError> {
        let _ = (session, proof);
        Err(no_sessions())
    }

    /// Runs one prompt of an authorized session: generates at most `budget` tokens (what the
    /// deposit still pays for) and at most the prompt's `max_tokens`, sending each to `sink`,
    /// and says why it stopped ([`FinishReason::Deposit`] when the budget ran out first).
    async fn run_session(
        &self,
        session: SessionId,
        prompt: SessionPrompt,
        budget: u64,
        sink: StreamSink,
    ) -> Result<FinishReason, StreamError> {
        let _ = (session, prompt, budget, sink);
        Err(no_sessions())
    }

    /// The client of an authorized session asked to end it: close it on chain with the newest
    /// receipt held (in the background) and say what the close pays for.
    async fn end_session(&self, session: SessionId) -> Result<SessionEnding, StreamError> {
        let _ = session;
        Err(no_sessions())
    }

    /// A session stream authorized by [`HostService::authorize_session`] ended, however it
    /// ended, with the newest receipt the client signed on it (checked like a job's: newer
    /// than the grant's, counting no more than was delivered, the host's own transcript).
    /// `None`: nothing newer than the grant's. The session may be prompted again.
    async fn session_stream_ended(&self, session: SessionId, newest: Option<SignedReceipt>) {
        let _ = (session, newest);
    }

    /// `job`'s stored result `cid` for `/fabstir/result/1.0.0`, if `proof` (over the request,
    /// unexpired) is the job's client's: `Found`, `NotFound` (no such result for that job) or
    /// `Refused` (someone else's request).
    async fn result(&self, job: JobId, cid: &Cid, proof: &ClientProof) -> ResultResponse {
        let _ = (job, cid, proof);
        ResultResponse::NotFound
    }
}

fn no_sessions() -> StreamError {
    StreamError {
        code: StreamErrorCode::UnknownJob,
        message: "this host serves no sessions".into(),
    }
}

/// What a host grants the client of a session for one prompt stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionGrant {
    /// The session's client: whose receipts count.
    pub client: Address,
    /// The newest receipt the host holds for the session (`None` before the first): the
    /// transcript continues from it.
    pub resume: Option<SignedReceipt>,
    /// Counted tokens the deposit pays for beyond `resume`.
    pub available_tokens: u64,
}

/// How a client answered a stream's challenge: the digest it signed (EIP-191 over the
/// challenge message), its signature, and who ECDSA recovers from them. A contract wallet's
/// signature may recover to no one, or to one of its owners, and is checked by the wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientProof {
    /// The EIP-191 digest of the challenge message.
    pub digest: H256,
    /// The client's signature over it.
    pub signature: Vec<u8>,
    /// The signer ECDSA recovers, if the signature is a well-formed ECDSA one.
    pub recovered: Option<Address>,
}

impl ClientProof {
    /// Whether the proof is `client`'s: its ECDSA signer, or a signature `client`'s wallet
    /// accepts when `client` is a contract (asked through `service`).
    pub async fn is_from<S: HostService + ?Sized>(&self, client: Address, service: &S) -> bool {
        self.recovered == Some(client)
            || service
                .wallet_accepts(client, self.digest, &self.signature)
                .await
    }
}

/// Where a running job puts its tokens. Bounded: when the client reads slower than the job
/// produces, `send` waits and the writer coalesces what is queued into one frame.
#[derive(Debug, Clone)]
pub struct StreamSink {
    tx: mpsc::Sender<StreamToken>,
}

impl StreamSink {
    pub(crate) fn new(tx: mpsc::Sender<StreamToken>) -> Self {
        Self { tx }
    }

    /// Queues a token for the client; [`Error::Cancelled`] once the client cancelled or the
    /// stream broke.
    pub async fn send(&self, token: StreamToken) -> Result<()> {
        self.tx.send(token).await.map_err(|_| Error::Cancelled)
    }

    /// Like [`StreamSink::send`] for a producer on a blocking thread (e.g. an inference engine
    /// in `spawn_blocking`); must not be called from async code.
    pub fn blocking_send(&self, token: StreamToken) -> Result<()> {
        self.tx.blocking_send(token).map_err(|_| Error::Cancelled)
    }

    /// Whether the client cancelled or the stream broke.
    pub fn is_cancelled(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the client cancels or the stream breaks.
    pub async fn cancelled(&self) {
        self.tx.closed().await;
    }
}
