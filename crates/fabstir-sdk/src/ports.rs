//! The layers the SDK holds, each behind a trait over `fabstir-core` types so that it can be
//! swapped: the chain (contracts and payments) and the network (discovery, quotes, streams).
//! The real implementations are [`ChainClient`](crate::ChainClient) and
//! [`P2pNetwork`](crate::P2pNetwork); the in-memory ones (`test-utils`) pass the same
//! conformance suite (`crate::conformance`).
//!
//! Spending calls take the application's key for that call only; nothing here stores one.

use std::sync::Arc;

use async_trait::async_trait;
use fabstir_core::auth::{ClientSigner, SigningKey};
use fabstir_core::primitives::Address;
use fabstir_core::wire::{PromptFrame, Quote, QuoteRequest, SessionPrompt};
use fabstir_core::{
    DiscoveredNode, JobDetails, JobId, JobOutcome, JobPayment, JobRequirements, MarketRules,
    NodePeerId, OnChainJob, OnChainSession, PaymentToken, ProviderQuery, SessionDetails,
    SessionEvent, SessionId, StreamEvent, TokenAmount,
};
use fabstir_p2p::PoolStats;
use futures::stream::BoxStream;

use crate::Result;

/// The chain as the SDK uses it.
#[async_trait]
pub trait ChainLayer: Send + Sync {
    /// The chain id.
    fn chain_id(&self) -> u64;
    /// The JobMarketplace address (covered by client signatures).
    fn marketplace(&self) -> Address;
    /// Resolves a payment token by symbol or address.
    fn token(&self, symbol_or_address: &str) -> Result<PaymentToken>;
    /// The chain's current time (latest block), unix seconds.
    async fn now(&self) -> Result<u64>;
    /// The marketplace's time rules (shortest job, grace period, close window).
    async fn rules(&self) -> Result<MarketRules>;
    /// `owner`'s balance of `token`.
    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount>;
    /// What the marketplace owes `owner` in `token`: a host's earnings (settlements credit
    /// them) and refunds it could not deliver.
    async fn credit(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount>;
    /// Sends `key`'s account its whole credit in `token`; returns the amount (zero: nothing
    /// was owed, and no transaction was sent).
    async fn withdraw_credit(&self, token: &PaymentToken, key: &SigningKey) -> Result<TokenAmount>;
    /// Posts a job and pays its escrow from `key`'s account; returns its id.
    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<JobId>;
    /// A job as stored on chain; [`Error::JobNotFound`](crate::Error::JobNotFound) or a
    /// `None`-status job for an unknown id.
    async fn job(&self, id: JobId) -> Result<OnChainJob>;
    /// Cancels an unclaimed job of `key`'s account (full refund).
    async fn cancel_job(&self, id: JobId, key: &SigningKey) -> Result<()>;
    /// Asks to close a claimed job of `key`'s account whose host is silent: the host may
    /// settle until the close window ends, then the job may be expired.
    async fn request_close(&self, id: JobId, key: &SigningKey) -> Result<()>;
    /// Expires a job whose time is up (full refund to its client).
    async fn expire_job(&self, id: JobId, key: &SigningKey) -> Result<()>;
    /// How a job ended once it holds no more funds (settled with a result, or refunded);
    /// `None` while it is open.
    async fn job_outcome(&self, id: JobId) -> Result<Option<JobOutcome>>;

    /// Opens a session with `details.host` and pays `payment` as its deposit from `key`'s
    /// account (by the same payment paths as a job); returns its id.
    async fn open_session(
        &self,
        details: &SessionDetails,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<SessionId>;
    /// A session, open or finished (its final deposit and settled tokens);
    /// [`Error::Contracts`](crate::Error::Contracts) with `SessionNotFound` for an unknown id.
    async fn session(&self, id: SessionId) -> Result<OnChainSession>;
    /// Adds `amount` (in the session's token) to an open session of `key`'s account, before
    /// its expiry.
    async fn top_up_session(
        &self,
        id: SessionId,
        amount: TokenAmount,
        key: &SigningKey,
    ) -> Result<()>;
    /// Asks to close an open session of `key`'s account whose host is silent: the host may
    /// settle or close until the close window ends, then the session may be expired.
    async fn request_session_close(&self, id: SessionId, key: &SigningKey) -> Result<()>;
    /// Expires a session whose time is up: its client gets back the deposit not settled.
    async fn expire_session(&self, id: SessionId, key: &SigningKey) -> Result<()>;
    /// Every session `client` opened (since the deployment), open or finished, in the order
    /// they were opened.
    async fn sessions_of(&self, client: Address) -> Result<Vec<OnChainSession>>;
}

/// The network as the SDK uses it.
#[async_trait]
pub trait NetworkLayer: Send + Sync {
    /// Verified providers matching the query.
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>>;
    /// Asks a host for a quote; a refusal is
    /// [`Error::HostDeclined`](crate::Error::HostDeclined).
    async fn quote(&self, host: &NodePeerId, request: QuoteRequest) -> Result<Quote>;
    /// Tells a host that its quoted job is posted (it claims it on chain).
    async fn announce_posted(&self, host: &NodePeerId, job: JobId) -> Result<()>;
    /// Opens an authenticated token stream for a claimed job.
    async fn open_stream(
        &self,
        host: &NodePeerId,
        job: JobId,
        signer: Arc<dyn ClientSigner>,
        prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>>;
    /// Sends one prompt on an open session with `host` (one stream per prompt, no chain round
    /// trip) and returns its events; `signer` receipts what arrives, cumulatively over the
    /// session.
    async fn open_session_stream(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
        prompt: SessionPrompt,
    ) -> Result<BoxStream<'static, Result<SessionEvent>>>;
    /// Asks `host` to end `session`: it closes it on chain with the newest receipt it holds
    /// (the rest of the deposit goes back to the client). Returns the receipted tokens the
    /// close pays for.
    async fn end_session(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
    ) -> Result<u64>;
    /// Records how a job with a host went (ranking uses it).
    fn record_outcome(&self, host: &NodePeerId, success: bool);
    /// The connection pool's counters, for a network that keeps a pool (the in-memory one
    /// does not).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}
