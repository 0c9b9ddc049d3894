//! What an application asks for, what it gets back while a job runs, and what it ends with.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fabstir_core::cid::Cid;
use fabstir_core::primitives::Address;
use fabstir_core::{JobId, JobState, NodePeerId, PaymentToken, ScoreWeights, TokenAmount};
use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{Error, Result};

/// A job to run: the seed's `submitJob` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// The model's name (its id is `keccak256(name)`).
    pub model: String,
    /// The prompt; it travels peer to peer only, its hash goes on chain.
    pub prompt: String,
    /// Most tokens to generate (and pay for).
    pub max_tokens: u32,
    /// Payment token, by symbol (`USDC`, `ETH`) or address.
    pub token: String,
    /// Most the job may escrow, in the token's base units; `None` for no limit.
    pub budget: Option<TokenAmount>,
    /// Highest acceptable price per token, in base units.
    pub max_price: Option<TokenAmount>,
    /// Most the client risks to a host at once, in the token's base units: a quote whose
    /// credit window (tokens the host may stream ahead of the newest receipt) times its price
    /// is above it is refused. `None`: only `SdkConfig::max_credit_window` (in tokens) applies.
    pub max_credit: Option<TokenAmount>,
    /// Highest acceptable measured latency to the host.
    pub max_latency: Option<Duration>,
    /// Ranking weights.
    pub weights: ScoreWeights,
    /// Whether tokens are delivered as they arrive (`JobHandle::next_tokens`); when false the
    /// job goes from Processing straight to Completed and only the result is kept.
    pub stream: bool,
    /// Sampling temperature x 1000 (0 is greedy).
    pub temperature_milli: u32,
    /// Top-p x 1000 (1000 disables it).
    pub top_p_milli: u32,
    /// Sampling seed.
    pub seed: u64,
}

impl JobRequest {
    /// A streamed request for `model` with `prompt`: 128 tokens, paid in USDC, greedy.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: prompt.into(),
            max_tokens: 128,
            token: "USDC".into(),
            budget: None,
            max_price: None,
            max_credit: None,
            max_latency: None,
            weights: ScoreWeights::default(),
            stream: true,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 1,
        }
    }

    /// Sets the payment token (`USDC`, `ETH`, or an address).
    pub fn pay_with(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Sets the most tokens generated.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }
}

/// How a job ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The on-chain job that completed.
    pub job: JobId,
    /// The host that served it.
    pub host: NodePeerId,
    /// The host's Ethereum address (paid).
    pub host_address: Address,
    /// The generated text.
    pub text: String,
    /// Its CID (checked against the host's signed final frame and the chain).
    pub cid: Cid,
    /// Tokens the host was paid for (the settlement on chain).
    pub tokens_used: u64,
    /// Tokens with text this client received and signed receipts for; the SDK checked that
    /// the settlement pays exactly these.
    pub tokens_receipted: u64,
    /// The payment token.
    pub token: PaymentToken,
    /// Paid to the host.
    pub paid: TokenAmount,
    /// Protocol fee.
    pub fee: TokenAmount,
    /// Returned to the client from the escrow.
    pub refund: TokenAmount,
    /// Hosts tried (1 when the first one served it).
    pub attempts: u32,
    /// Jobs posted on hosts that failed; their escrow is being or was recovered.
    pub failed_jobs: Vec<JobId>,
}

/// A running job: its state, its tokens as they arrive, and its result.
#[derive(Debug)]
pub struct JobHandle {
    pub(crate) request: u64,
    pub(crate) state: watch::Receiver<(JobState, Option<JobId>)>,
    pub(crate) tokens: mpsc::Receiver<String>,
    pub(crate) result: oneshot::Receiver<Result<JobResult>>,
    pub(crate) cancel: CancellationToken,
    /// Dropping the handle cancels the job.
    pub(crate) _guard: DropGuard,
}

impl JobHandle {
    /// The SDK's number for this request (events name it).
    pub fn request_id(&self) -> u64 {
        self.request
    }

    /// The current state of the current attempt.
    pub fn state(&self) -> JobState {
        self.state.borrow().0
    }

    /// The on-chain id of the current attempt, once posted.
    pub fn job_id(&self) -> Option<JobId> {
        self.state.borrow().1
    }

    /// Waits for the next state change; `None` once the job is over.
    pub async fn state_changed(&mut self) -> Option<JobState> {
        self.state.changed().await.ok()?;
        Some(self.state.borrow().0)
    }

    /// The next streamed text, in order; `None` when the stream ended. When a job fails over,
    /// text from the failed host is not repeated; the new host's text follows.
    pub async fn next_tokens(&mut self) -> Option<String> {
        self.tokens.recv().await
    }

    /// Stops the job: streaming stops and any posted escrow is recovered.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the job to end. Streamed text not yet read is dropped.
    pub async fn result(self) -> Result<JobResult> {
        let JobHandle {
            result,
            tokens,
            _guard,
            ..
        } = self;
        drop(tokens);
        let outcome = result.await.unwrap_or(Err(Error::Cancelled));
        drop(_guard);
        outcome
    }
}

impl Stream for JobHandle {
    type Item = String;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<String>> {
        self.tokens.poll_recv(cx)
    }
}
