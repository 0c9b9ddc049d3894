//! The host's decisions: quotes, claims, client authorization, inference, results and
//! settlement. [`Host`] implements the network layer's [`HostService`]; the chain watcher in
//! [`crate::chain`] feeds it jobs announced on chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dashmap::DashMap;
use fabstir_contracts::{HeadlessContractManager, JobStatus, OnChainJob, WalletSigner};
use fabstir_core::auth::{self, SigningKey};
use fabstir_core::primitives::{Address, keccak256};
use fabstir_core::wire::{
    CapabilitiesResponse, JobRequest, JobResponse, PromptFrame, Quote, QuoteRequest, RejectReason,
    StreamDone, StreamError, StreamErrorCode, StreamToken,
};
use fabstir_core::{JobId, ModelId, NodeCapabilities, NodePeerId, TokenAmount, TokenPrice};
use fabstir_inference::{GenerateRequest, InferenceBackend};
use fabstir_p2p::{HostService, PeerId, TokenSink};
use fabstir_payments::SharedNonce;
use fabstir_storage::ResultStore;
use tokio::sync::{Mutex, Semaphore};

use crate::metrics::Metrics;

/// The software version hosts advertise.
pub const VERSION: &str = concat!("fabstir-node/", env!("CARGO_PKG_VERSION"));

/// A model the host serves: its backend and its prices.
#[derive(Clone)]
pub struct ServedModel {
    /// The model's name (its id is `keccak256(name)`).
    pub name: String,
    /// Where it runs.
    pub backend: Arc<dyn InferenceBackend>,
    /// Price per token, one per accepted payment token.
    pub prices: Vec<TokenPrice>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("prices", &self.prices)
            .finish_non_exhaustive()
    }
}

/// Limits of the host.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// Jobs run at once.
    pub max_concurrent: usize,
    /// Jobs waiting for a slot before new ones are refused.
    pub queue: usize,
    /// Most tokens generated for one job.
    pub max_tokens: u32,
    /// How long a quote holds.
    pub quote_validity: Duration,
}

/// What the host knows of a job it claimed.
#[derive(Debug, Clone)]
struct ClaimedJob {
    job: OnChainJob,
}

/// The host node's state and decisions. Cheap to share behind an `Arc`.
pub struct Host {
    key: SigningKey,
    address: Address,
    chain_id: u64,
    peer_id: NodePeerId,
    contracts: HeadlessContractManager,
    sender: Arc<SharedNonce<WalletSigner>>,
    models: HashMap<ModelId, ServedModel>,
    store: Arc<dyn ResultStore>,
    limits: HostLimits,
    slots: Semaphore,
    claims: DashMap<JobId, Arc<Mutex<Option<ClaimedJob>>>>,
    metrics: Arc<Metrics>,
    stopping: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("address", &self.address)
            .field("peer_id", &self.peer_id)
            .field(
                "models",
                &self.models.values().map(|m| &m.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Everything [`Host::new`] needs.
pub struct HostParts {
    /// The host's Ethereum key (identity and result signatures).
    pub key: SigningKey,
    /// The host's libp2p peer id.
    pub peer_id: NodePeerId,
    /// The chain.
    pub contracts: HeadlessContractManager,
    /// The host's transaction sender (its wallet with shared nonces).
    pub sender: Arc<SharedNonce<WalletSigner>>,
    /// Models served.
    pub models: Vec<ServedModel>,
    /// Where results are stored.
    pub store: Arc<dyn ResultStore>,
    /// Limits.
    pub limits: HostLimits,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl Host {
    /// Builds the host.
    pub fn new(parts: HostParts) -> Self {
        let chain_id = parts.contracts.chain_id();
        Self {
            address: auth::address_of(&parts.key),
            key: parts.key,
            chain_id,
            peer_id: parts.peer_id,
            contracts: parts.contracts,
            sender: parts.sender,
            models: parts
                .models
                .into_iter()
                .map(|m| (ModelId::from_name(&m.name), m))
                .collect(),
            store: parts.store,
            slots: Semaphore::new(parts.limits.max_concurrent.max(1)),
            limits: parts.limits,
            claims: DashMap::new(),
            metrics: parts.metrics,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Marks the host as stopping: jobs interrupted from now on are not settled (as after a
    /// crash, their clients recover the escrow), and no new job is claimed.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The models served, by id.
    pub fn models(&self) -> impl Iterator<Item = (&ModelId, &ServedModel)> {
        self.models.iter()
    }

    /// The host's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain access the host uses.
    pub fn contracts(&self) -> &HeadlessContractManager {
        &self.contracts
    }

    /// The host's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The capabilities advertised now.
    pub fn current_capabilities(&self) -> NodeCapabilities {
        let mut prices: Vec<TokenPrice> = Vec::new();
        for model in self.models.values() {
            for price in &model.prices {
                if !prices.iter().any(|p| p.token == price.token) {
                    prices.push(*price);
                }
            }
        }
        NodeCapabilities {
            peer_id: self.peer_id.clone(),
            eth_address: self.address,
            models: self.models.keys().copied().collect(),
            prices,
            max_tokens: self.limits.max_tokens,
            current_load: gauge(&self.metrics.jobs_running),
            max_concurrent: u32::try_from(self.limits.max_concurrent).unwrap_or(u32::MAX),
            queue_depth: gauge(&self.metrics.jobs_waiting),
            version: VERSION.to_owned(),
        }
    }

    fn price(&self, model: &ModelId, token: Address) -> Option<TokenAmount> {
        self.models
            .get(model)?
            .prices
            .iter()
            .find(|p| p.token == token)
            .map(|p| p.price_per_token)
    }

    fn busy(&self) -> bool {
        let waiting = usize::try_from(gauge(&self.metrics.jobs_waiting)).unwrap_or(usize::MAX);
        self.slots.available_permits() == 0 && waiting >= self.limits.queue
    }

    fn quote(&self, request: &QuoteRequest) -> JobResponse {
        let reject = |reason, message: String| JobResponse::Rejected { reason, message };
        if !self.models.contains_key(&request.model) {
            return reject(
                RejectReason::UnknownModel,
                format!("model {} not served", request.model),
            );
        }
        let Some(price) = self.price(&request.model, request.token) else {
            return reject(
                RejectReason::TokenNotAccepted,
                format!("token {:#x} not accepted", request.token),
            );
        };
        if request.offered_price_per_token < price {
            return reject(
                RejectReason::PriceTooLow,
                format!("price per token is {}", price.base_units()),
            );
        }
        if request.max_tokens > self.limits.max_tokens {
            return reject(
                RejectReason::TooManyTokens,
                format!("at most {} tokens per job", self.limits.max_tokens),
            );
        }
        if self.busy() {
            return reject(RejectReason::Busy, "at capacity".into());
        }
        JobResponse::Quote(Quote {
            host: self.address,
            model: request.model,
            price_per_token: price,
            token: request.token,
            max_tokens: request.max_tokens,
            valid_until: unix_now() + self.limits.quote_validity.as_secs(),
        })
    }

    /// Whether this host would take `job` on its terms (ignoring its status).
    fn acceptable(&self, job: &OnChainJob) -> Result<(), (RejectReason, String)> {
        if let Some(host) = job.host
            && host != self.address
            && job.status == JobStatus::Posted
        {
            return Err((
                RejectReason::TermsMismatch,
                format!("job names host {host:#x}"),
            ));
        }
        let details = &job.details;
        let Some(price) = self.price(&details.model, job.token) else {
            return Err((
                RejectReason::UnknownModel,
                "model or token not served".into(),
            ));
        };
        if details.price_per_token < price {
            return Err((
                RejectReason::PriceTooLow,
                "job pays below this host's price".into(),
            ));
        }
        if details.max_tokens > self.limits.max_tokens {
            return Err((
                RejectReason::TooManyTokens,
                "job asks for too many tokens".into(),
            ));
        }
        if details.deadline <= unix_now() {
            return Err((RejectReason::TermsMismatch, "deadline passed".into()));
        }
        Ok(())
    }

    /// Claims `job` unless it is already claimed by this host; idempotent and safe to call
    /// from the chain watcher and a peer's message at once.
    pub async fn ensure_claimed(&self, id: JobId) -> Result<OnChainJob, (RejectReason, String)> {
        if self.is_stopping() {
            return Err((RejectReason::Busy, "shutting down".into()));
        }
        let slot = self.claims.entry(id).or_default().clone();
        let mut claimed = slot.lock().await;
        if let Some(entry) = claimed.as_ref() {
            return Ok(entry.job.clone());
        }
        let job = self
            .contracts
            .job(id)
            .await
            .map_err(|e| (RejectReason::JobNotFound, e.to_string()))?;
        match job.status {
            JobStatus::Claimed if job.host == Some(self.address) => {}
            JobStatus::Posted => {
                self.acceptable(&job)?;
                if self.busy() {
                    return Err((RejectReason::Busy, "at capacity".into()));
                }
                match self.contracts.claim_job(id, &self.sender).await {
                    Ok(_) => {}
                    Err(fabstir_contracts::Error::JobAlreadyClaimed { claimer, .. })
                        if claimer == self.address => {}
                    Err(e) => {
                        Metrics::inc(&self.metrics.errors);
                        return Err((RejectReason::JobNotFound, e.to_string()));
                    }
                }
                Metrics::inc(&self.metrics.jobs_claimed);
                tracing::info!(job = %id, client = %job.client, "claimed job");
            }
            status => {
                return Err((RejectReason::JobNotFound, format!("job {id} is {status}")));
            }
        }
        let job = OnChainJob {
            host: Some(self.address),
            status: JobStatus::Claimed,
            ..job
        };
        *claimed = Some(ClaimedJob { job: job.clone() });
        Ok(job)
    }

    /// Gives a claimed job back so its client is refunded at once (after a failed inference).
    async fn release(&self, id: JobId) {
        match self.contracts.release_job(id, &self.sender).await {
            Ok(_) => {
                Metrics::inc(&self.metrics.jobs_released);
                tracing::warn!(job = %id, "released job; client refunded");
            }
            Err(e) => {
                Metrics::inc(&self.metrics.errors);
                tracing::error!(job = %id, error = %e, "could not release job");
            }
        }
    }

    async fn claimed_job(&self, id: JobId) -> Option<OnChainJob> {
        let slot = self.claims.get(&id)?.clone();
        let claimed = slot.lock().await;
        claimed.as_ref().map(|c| c.job.clone())
    }

    /// Generates, streams and stores; returns the text and the tokens delivered, and whether
    /// the client cancelled.
    async fn generate(
        &self,
        job: &OnChainJob,
        prompt: &PromptFrame,
        sink: &TokenSink,
    ) -> Result<(String, u64, bool), StreamError> {
        let model = self
            .models
            .get(&job.details.model)
            .ok_or_else(|| StreamError {
                code: StreamErrorCode::UnknownJob,
                message: "model not served".into(),
            })?;
        let request = GenerateRequest {
            prompt: prompt.prompt.clone(),
            max_tokens: job.details.max_tokens.min(self.limits.max_tokens),
            temperature: milli(prompt.temperature_milli),
            top_p: milli(prompt.top_p_milli),
            seed: prompt.seed,
            ..GenerateRequest::default()
        };
        let failed = |e: fabstir_inference::Error| StreamError {
            code: StreamErrorCode::InferenceFailed,
            message: e.to_string(),
        };
        let mut tokens = model.backend.generate(request).await.map_err(failed)?;
        let mut text = String::new();
        let mut count = 0u64;
        while let Some(token) = tokens.next_token().await {
            let token = token.map_err(failed)?;
            text.push_str(&token.text);
            count += 1;
            let frame = StreamToken {
                id: token.id,
                text: token.text,
            };
            if sink.send(frame).await.is_err() {
                tokens.cancel();
                return Ok((text, count, true));
            }
        }
        Ok((text, count, false))
    }

    /// Submits a result on chain, in the background.
    fn settle(self: &Arc<Self>, id: JobId, cid: String, tokens_used: u64) {
        if self.is_stopping() {
            tracing::warn!(job = %id, "stopping: not settling an interrupted job");
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            match host
                .contracts
                .submit_result(id, cid.as_bytes(), tokens_used, &host.sender)
                .await
            {
                Ok(settlement) => {
                    Metrics::inc(&host.metrics.jobs_completed);
                    tracing::info!(job = %id, %cid, tokens_used, paid = %settlement.paid.base_units(), "result submitted");
                }
                Err(e) => {
                    Metrics::inc(&host.metrics.errors);
                    tracing::error!(job = %id, error = %e, "submitting the result failed");
                }
            }
        });
    }
}

/// The [`HostService`] the network layer calls, over a shared [`Host`].
#[derive(Debug, Clone)]
pub struct HostHandle(pub Arc<Host>);

#[async_trait]
impl HostService for HostHandle {
    fn address(&self) -> Address {
        self.0.address
    }

    async fn capabilities(&self) -> CapabilitiesResponse {
        let host = &self.0;
        let caps = host.current_capabilities();
        let message = auth::identity_message(host.chain_id, &caps.peer_id, caps.eth_address);
        let identity_signature = auth::sign_message(&host.key, &message)
            .map(|s| s.to_vec())
            .unwrap_or_default();
        CapabilitiesResponse {
            capabilities: caps,
            chain_id: host.chain_id,
            identity_signature,
        }
    }

    async fn job(&self, _peer: PeerId, request: JobRequest) -> JobResponse {
        match request {
            JobRequest::Quote(quote) => self.0.quote(&quote),
            JobRequest::Posted { job } => match self.0.ensure_claimed(job).await {
                Ok(_) => JobResponse::Accepted { job },
                Err((reason, message)) => {
                    Metrics::inc(&self.0.metrics.jobs_refused);
                    JobResponse::Rejected { reason, message }
                }
            },
        }
    }

    async fn authorize(&self, job: JobId, client: Address) -> Result<(), StreamError> {
        let host = &self.0;
        let claimed = match host.claimed_job(job).await {
            Some(claimed) => claimed,
            None => {
                // Check who posted the job before claiming it: a stranger's stream must not
                // make this host claim anything.
                let posted = host.contracts.job(job).await.map_err(|e| StreamError {
                    code: StreamErrorCode::UnknownJob,
                    message: e.to_string(),
                })?;
                if posted.client != client {
                    Metrics::inc(&host.metrics.jobs_refused);
                    return Err(StreamError {
                        code: StreamErrorCode::AuthFailed,
                        message: format!("{client:#x} is not the client of job {job}"),
                    });
                }
                host.ensure_claimed(job)
                    .await
                    .map_err(|(_, message)| StreamError {
                        code: StreamErrorCode::UnknownJob,
                        message,
                    })?
            }
        };
        if claimed.client != client {
            Metrics::inc(&host.metrics.jobs_refused);
            return Err(StreamError {
                code: StreamErrorCode::AuthFailed,
                message: format!("{client:#x} is not the client of job {job}"),
            });
        }
        Ok(())
    }

    async fn run(
        &self,
        job: JobId,
        client: Address,
        prompt: PromptFrame,
        sink: TokenSink,
    ) -> Result<StreamDone, StreamError> {
        let host = &self.0;
        let Some(claimed) = host.claimed_job(job).await.filter(|j| j.client == client) else {
            return Err(StreamError {
                code: StreamErrorCode::UnknownJob,
                message: format!("job {job} is not claimed for {client:#x}"),
            });
        };
        if keccak256(prompt.prompt.as_bytes()) != claimed.details.prompt_hash.0 {
            Metrics::inc(&host.metrics.jobs_refused);
            return Err(StreamError {
                code: StreamErrorCode::PromptMismatch,
                message: "the prompt does not match the job's prompt hash".into(),
            });
        }
        host.metrics.jobs_waiting.fetch_add(1, Ordering::Relaxed);
        let permit = host.slots.acquire().await;
        host.metrics.jobs_waiting.fetch_sub(1, Ordering::Relaxed);
        let Ok(_permit) = permit else {
            return Err(StreamError {
                code: StreamErrorCode::Unavailable,
                message: "shutting down".into(),
            });
        };
        host.metrics.jobs_running.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = host.generate(&claimed, &prompt, &sink).await;
        host.metrics.jobs_running.fetch_sub(1, Ordering::Relaxed);
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        host.metrics
            .streaming_millis
            .fetch_add(elapsed, Ordering::Relaxed);
        let (text, tokens_used, cancelled) = match outcome {
            Ok(done) => done,
            Err(error) => {
                Metrics::inc(&host.metrics.errors);
                host.release(job).await;
                return Err(error);
            }
        };
        host.metrics
            .tokens_generated
            .fetch_add(tokens_used, Ordering::Relaxed);
        let cid = match host.store.put(text.into_bytes().into()).await {
            Ok(cid) => cid.to_string(),
            Err(e) => {
                Metrics::inc(&host.metrics.errors);
                host.release(job).await;
                return Err(StreamError {
                    code: StreamErrorCode::InferenceFailed,
                    message: format!("storing the result: {e}"),
                });
            }
        };
        let message = auth::result_message(host.chain_id, job, &cid, tokens_used);
        let signature = auth::sign_message(&host.key, &message)
            .map(|s| s.to_vec())
            .unwrap_or_default();
        // Delivered tokens are paid for even when the client stopped early.
        self.0.settle(job, cid.clone(), tokens_used);
        if cancelled {
            return Err(StreamError {
                code: StreamErrorCode::Cancelled,
                message: format!("cancelled after {tokens_used} tokens"),
            });
        }
        Ok(StreamDone {
            result_cid: cid,
            tokens_used,
            signature,
        })
    }

    async fn result(&self, cid: &str) -> Option<Vec<u8>> {
        let cid = fabstir_storage::parse_cid(cid).ok()?;
        self.0.store.get(&cid).await.ok()
    }
}

fn gauge(value: &std::sync::atomic::AtomicU64) -> u32 {
    u32::try_from(value.load(Ordering::Relaxed)).unwrap_or(u32::MAX)
}

fn milli(value: u32) -> f32 {
    // Sampling parameters travel as thousandths; 1000 is 1.0.
    (f64::from(value) / 1000.0) as f32
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
