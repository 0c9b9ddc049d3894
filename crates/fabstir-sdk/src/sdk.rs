//! [`FabstirSdk`]: the headless facade and the job lifecycle with failover.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use ethers::signers::{LocalWallet, Signer as _};
use fabstir_contracts::{
    ChainPeerRegistry, HeadlessContractManager, JobStatus, ManagerConfig, MarketplaceEvent,
};
use fabstir_core::job::prompt_hash;
use fabstir_core::primitives::Address;
use fabstir_core::wire::{JobRequest as WireJobRequest, JobResponse, PromptFrame, QuoteRequest};
use fabstir_core::{
    Deployment, DiscoveredNode, JobDetails, JobId, JobRequirements, JobState, ModelId, NodePeerId,
    PaymentToken, ProviderQuery, SelectionCriteria, TokenAmount,
};
use fabstir_p2p::{Keypair, Network, P2pConfig, StreamEvent};
use fabstir_payments::{JobPayment, PaymentConfig, PaymentManager, TokenRegistry};
use futures::StreamExt;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::job::{JobHandle, JobRequest, JobResult};
use crate::layers::{ChainClient, ChainLayer, NetworkLayer, P2pNetwork, WalletClientSigner};
use crate::{Error, Result, SdkConfig, SdkEvent};

/// What the SDK knows of a job it ran or recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatusReport {
    /// The job.
    pub job: JobId,
    /// Its lifecycle state as far as the chain shows it.
    pub state: JobState,
    /// The client that posted it.
    pub client: Address,
    /// The host that claimed it, if any.
    pub host: Option<Address>,
    /// The payment token (zero address for ETH).
    pub token: Address,
    /// The escrowed amount.
    pub amount: TokenAmount,
    /// The submitted result's CID, once completed.
    pub result_cid: Option<String>,
    /// Paid to the host, fee, refund: once settled.
    pub settlement: Option<(TokenAmount, TokenAmount, TokenAmount)>,
    /// Refunded without a result (cancelled, expired or released).
    pub refunded: Option<TokenAmount>,
}

struct Inner {
    config: SdkConfig,
    poll: Duration,
    chain: Arc<dyn ChainLayer>,
    network: Arc<dyn NetworkLayer>,
    signer: RwLock<Option<Arc<LocalWallet>>>,
    jobs: DashMap<JobId, JobState>,
    events: broadcast::Sender<SdkEvent>,
    next_request: AtomicU64,
    recoveries: Mutex<JoinSet<()>>,
}

/// The headless SDK. Built with no signer: everything read-only works without one; spending
/// needs [`FabstirSdk::set_signer`]. The SDK never writes a key anywhere. Cheap to clone.
#[derive(Clone)]
pub struct FabstirSdk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FabstirSdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabstirSdk")
            .field("chain_id", &self.inner.config.chain_id)
            .field("has_signer", &self.has_signer())
            .finish_non_exhaustive()
    }
}

impl FabstirSdk {
    /// An SDK over explicit layers (real or in-memory).
    pub fn with_layers(
        config: SdkConfig,
        chain: Arc<dyn ChainLayer>,
        network: Arc<dyn NetworkLayer>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                poll: config.poll_interval,
                config,
                chain,
                network,
                signer: RwLock::new(None),
                jobs: DashMap::new(),
                events,
                next_request: AtomicU64::new(1),
                recoveries: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// Connects the real layers: the chain at `config.rpc_url` with `deployment`, and a
    /// libp2p client node (fresh identity) bootstrapped from `config.bootstrap_peers`.
    pub async fn connect(config: SdkConfig, deployment: &Deployment) -> Result<Self> {
        // A client only dials out: it listens nowhere, so it never announces addresses that
        // other peers would try (and, once it is gone, fail) to reach.
        let p2p = P2pConfig {
            listen_addrs: Vec::new(),
            ..P2pConfig::default()
        };
        Self::connect_with(config, deployment, PaymentConfig::default(), p2p).await
    }

    /// [`Self::connect`] with explicit payment and network settings (listen addresses,
    /// stream limits); the chain id, marketplace, bootstrap peers, pool, TTL and timeouts
    /// still come from `config`.
    pub async fn connect_with(
        config: SdkConfig,
        deployment: &Deployment,
        payments: PaymentConfig,
        p2p: P2pConfig,
    ) -> Result<Self> {
        let manager = ManagerConfig {
            poll_interval: config.poll_interval,
        };
        let contracts =
            HeadlessContractManager::connect(&config.rpc_url, deployment, &manager).await?;
        let payments = PaymentManager::new(
            contracts.clone(),
            TokenRegistry::from_deployment(deployment),
            payments,
        );
        let p2p = config.p2p_config(p2p)?;
        let network = Network::spawn(
            p2p,
            Keypair::generate_ed25519(),
            Arc::new(ChainPeerRegistry::new(contracts)),
            None,
        )
        .await?;
        if !config.bootstrap_peers.is_empty()
            && let Err(e) = network.bootstrap().await
        {
            tracing::debug!(error = %e, "bootstrap");
        }
        Ok(Self::with_layers(
            config,
            Arc::new(ChainClient::new(payments, deployment.start_block)),
            Arc::new(P2pNetwork::new(network)),
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &SdkConfig {
        &self.inner.config
    }

    /// Sets (or replaces) the signer. A wallet still on the default chain id (1) is moved to
    /// the SDK's chain; one set for another chain is refused.
    pub fn set_signer(&self, wallet: LocalWallet) -> Result<()> {
        let chain = self.inner.config.chain_id;
        let wallet = match wallet.chain_id() {
            c if c == chain => wallet,
            1 => wallet.with_chain_id(chain),
            other => {
                return Err(Error::WrongChain {
                    signer: other,
                    sdk: chain,
                });
            }
        };
        *self.inner.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(wallet));
        Ok(())
    }

    /// Forgets the signer.
    pub fn clear_signer(&self) {
        *self.inner.signer.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a signer is set.
    pub fn has_signer(&self) -> bool {
        self.inner
            .signer
            .read()
            .map(|s| s.is_some())
            .unwrap_or(false)
    }

    /// The signer's address, if one is set.
    pub fn signer_address(&self) -> Option<Address> {
        self.signer().ok().map(|w| w.address())
    }

    fn signer(&self) -> Result<Arc<LocalWallet>> {
        self.inner
            .signer
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(Error::NoSigner)
    }

    /// SDK events (state changes, tokens, discoveries, payments, errors).
    pub fn events(&self) -> broadcast::Receiver<SdkEvent> {
        self.inner.events.subscribe()
    }

    /// The layers (for advanced use and tests).
    pub fn chain(&self) -> &Arc<dyn ChainLayer> {
        &self.inner.chain
    }

    /// The network's connection pool counters: connections open, uses that found one open
    /// (`hits`) or had to dial (`misses`), evictions. `None` when the network layer keeps no
    /// pool (the in-memory one).
    pub fn pool_stats(&self) -> Option<fabstir_p2p::PoolStats> {
        self.inner.network.pool_stats()
    }

    /// Verified providers for a query (no signer needed).
    pub async fn discover(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        let nodes = self.inner.network.find_providers(query).await?;
        for node in &nodes {
            let _ = self.inner.events.send(SdkEvent::NodeDiscovered {
                peer_id: node.capabilities.peer_id.clone(),
                address: node.capabilities.eth_address,
                model: query.model,
            });
        }
        Ok(nodes)
    }

    /// `owner`'s balance of a token by symbol or address (no signer needed).
    pub async fn balance(&self, owner: Address, token: &str) -> Result<TokenAmount> {
        let token = self.inner.chain.token(token)?;
        self.inner.chain.balance(owner, &token).await
    }

    /// A payment token by symbol or address.
    pub fn token(&self, symbol_or_address: &str) -> Result<PaymentToken> {
        self.inner.chain.token(symbol_or_address)
    }

    /// A job's status, rebuilt from the chain (no signer needed).
    pub async fn job_status(&self, job: JobId) -> Result<JobStatusReport> {
        status_from_chain(self.inner.chain.as_ref(), job).await
    }

    /// Rebuilds a job's state from chain events after a restart and tracks it again.
    pub async fn recover_job(&self, job: JobId) -> Result<JobStatusReport> {
        let report = self.job_status(job).await?;
        self.inner.jobs.insert(job, report.state);
        Ok(report)
    }

    /// Recovers the escrow of a job that will not complete: cancels it while unclaimed, or
    /// expires it once its deadline passed (waiting for the deadline). Needs the signer.
    pub async fn recover_funds(&self, job: JobId) -> Result<JobStatusReport> {
        let wallet = self.signer()?;
        recover_escrow(&self.inner, job, &wallet).await;
        self.job_status(job).await
    }

    /// Cancels an unclaimed job of the signer (full refund).
    pub async fn cancel(&self, job: JobId) -> Result<()> {
        let wallet = self.signer()?;
        self.inner.chain.cancel_job(job, &wallet).await?;
        self.inner.jobs.insert(job, JobState::Failed);
        Ok(())
    }

    /// Waits until every escrow recovery started by failovers has finished.
    pub async fn wait_recoveries(&self) {
        let mut set = self.inner.recoveries.lock().await;
        while set.join_next().await.is_some() {}
    }

    /// Runs a job through the seed's lifecycle: discover, rank, quote (Negotiating), post and
    /// pay (Posted), host claims (Claimed), Processing/Streaming, Completed (text checked
    /// against the result CID), PaymentReleased (from JobCompleted). On a host failure the
    /// escrow is recovered and the next host is tried, up to `max_attempts`.
    pub async fn submit_job(&self, request: JobRequest) -> Result<JobHandle> {
        let wallet = self.signer()?;
        let token = self.inner.chain.token(&request.token)?;
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (state_tx, state_rx) = watch::channel((JobState::Negotiating, None));
        let (token_tx, token_rx) = mpsc::channel(1024);
        let (result_tx, result_rx) = oneshot::channel();
        let cancel = CancellationToken::new();
        let runner = Runner {
            inner: self.inner.clone(),
            request: id,
            wallet,
            token,
            state: state_tx,
            tokens: token_tx,
            cancel: cancel.clone(),
        };
        tokio::spawn(async move {
            let result = runner.run(request).await;
            if let Err(e) = &result {
                let _ = runner.inner.events.send(SdkEvent::Error {
                    job: runner.state.borrow().1,
                    message: e.to_string(),
                });
            }
            let _ = result_tx.send(result);
        });
        Ok(JobHandle {
            request: id,
            state: state_rx,
            tokens: token_rx,
            result: result_rx,
            _guard: cancel.clone().drop_guard(),
            cancel,
        })
    }
}

/// Why an attempt on one host ended without a result.
enum AttemptError {
    /// Try another host; the host is at fault (or just unavailable).
    Retry(String),
    /// Stop: retrying cannot help (the client's funds, a bad result already paid for...).
    Fatal(Error),
}

/// Runs one job request.
struct Runner {
    inner: Arc<Inner>,
    request: u64,
    wallet: Arc<LocalWallet>,
    token: PaymentToken,
    state: watch::Sender<(JobState, Option<JobId>)>,
    tokens: mpsc::Sender<String>,
    cancel: CancellationToken,
}

impl Runner {
    fn set_state(&self, to: JobState, job: Option<JobId>) {
        let (from, _) = *self.state.borrow();
        let to = match from.transition(to) {
            Ok(to) => to,
            Err(e) => {
                tracing::error!(error = %e, "state machine");
                return;
            }
        };
        self.state.send_replace((to, job));
        if let Some(job) = job {
            self.inner.jobs.insert(job, to);
        }
        let _ = self.inner.events.send(SdkEvent::JobStateChanged {
            request: self.request,
            job,
            from,
            to,
        });
    }

    async fn run(&self, request: JobRequest) -> Result<JobResult> {
        let model = ModelId::from_name(&request.model);
        let max_attempts = self.inner.config.max_attempts.max(1);
        let mut criteria = SelectionCriteria::new(ProviderQuery {
            model,
            token: self.token.address(),
            max_price: request.max_price,
            max_latency: request.max_latency,
        });
        criteria.weights = request.weights;
        let mut failed_jobs = Vec::new();
        let mut attempts = 0;
        let mut last = String::from("no host tried");
        while attempts < max_attempts {
            if self.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let nodes = self.inner.network.find_providers(&criteria.query).await?;
            let Ok(ranked) = fabstir_core::rank(nodes, &criteria) else {
                break;
            };
            let Some(host) = ranked.into_iter().next() else {
                break;
            };
            attempts += 1;
            if attempts > 1 {
                self.state.send_replace((JobState::Negotiating, None));
            }
            let peer = host.capabilities.peer_id.clone();
            match self.attempt(&request, model, &host, &mut failed_jobs).await {
                Ok(mut result) => {
                    self.inner.network.record_outcome(&peer, true);
                    result.attempts = attempts;
                    result.failed_jobs = failed_jobs;
                    return Ok(result);
                }
                Err(AttemptError::Fatal(e)) => {
                    // Read the job id first: holding the watch's read guard while sending
                    // would deadlock.
                    let job = self.state.borrow().1;
                    self.set_state(JobState::Failed, job);
                    return Err(e);
                }
                Err(AttemptError::Retry(reason)) => {
                    self.inner.network.record_outcome(&peer, false);
                    criteria.exclude.push(peer.clone());
                    let failed_job = self.state.borrow().1;
                    self.set_state(JobState::Failed, failed_job);
                    tracing::warn!(host = %peer, %reason, "failing over");
                    let _ = self.inner.events.send(SdkEvent::Failover {
                        request: self.request,
                        failed_job,
                        host: peer,
                        attempt: attempts + 1,
                        reason: reason.clone(),
                    });
                    last = reason;
                }
            }
        }
        if attempts == 0 {
            self.set_state(JobState::Failed, None);
            return Err(Error::NoProviders(request.model));
        }
        Err(Error::AllAttemptsFailed { attempts, last })
    }

    /// One attempt on one host.
    async fn attempt(
        &self,
        request: &JobRequest,
        model: ModelId,
        host: &DiscoveredNode,
        failed_jobs: &mut Vec<JobId>,
    ) -> Result<JobResult, AttemptError> {
        let inner = &self.inner;
        let peer = &host.capabilities.peer_id;
        let retry =
            |what: &str, e: &dyn std::fmt::Display| AttemptError::Retry(format!("{what}: {e}"));
        let hash = prompt_hash(&request.prompt);

        // Negotiate.
        let offered = request
            .max_price
            .or_else(|| host.capabilities.price_for(self.token.address()))
            .unwrap_or_default();
        let quote = match inner
            .network
            .negotiate(
                peer,
                WireJobRequest::Quote(QuoteRequest {
                    model,
                    max_tokens: request.max_tokens,
                    token: self.token.address(),
                    offered_price_per_token: offered,
                    prompt_hash: hash,
                    client: self.wallet.address(),
                }),
            )
            .await
        {
            Ok(JobResponse::Quote(quote)) => quote,
            Ok(JobResponse::Rejected { reason, message }) => {
                return Err(AttemptError::Retry(format!(
                    "host declined: {reason:?}: {message}"
                )));
            }
            Ok(other) => return Err(AttemptError::Retry(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(retry("negotiation", &e)),
        };
        let escrow = quote
            .price_per_token
            .checked_mul(request.max_tokens)
            .ok_or_else(|| AttemptError::Retry("escrow overflows".into()))?;
        if let Some(budget) = request.budget
            && escrow > budget
        {
            return Err(AttemptError::Retry(
                Error::OverBudget {
                    budget: self.token.format_amount(budget),
                    needed: self.token.format_amount(escrow),
                }
                .to_string(),
            ));
        }

        // Post and pay.
        let now = inner.chain.now().await.map_err(AttemptError::Fatal)?;
        let details = JobDetails {
            model,
            prompt_hash: hash,
            max_tokens: request.max_tokens,
            price_per_token: quote.price_per_token,
            deadline: now + inner.config.timeouts.job_deadline.as_secs(),
        };
        let requirements = JobRequirements {
            assigned_host: Some(quote.host),
        };
        let payment = JobPayment {
            token: self.token.clone(),
            amount: escrow,
        };
        let job = inner
            .chain
            .post_job(&details, &requirements, &payment, &self.wallet)
            .await
            .map_err(AttemptError::Fatal)?;
        self.set_state(JobState::Posted, Some(job));

        // From here on the escrow must come back if this host fails.
        let outcome = self.serve(request, job, &details, peer, quote.host).await;
        if let Err(AttemptError::Retry(_)) = &outcome {
            failed_jobs.push(job);
            self.spawn_recovery(job).await;
        }
        outcome
    }

    /// Claim, stream, verify and settle one posted job.
    async fn serve(
        &self,
        request: &JobRequest,
        job: JobId,
        details: &JobDetails,
        peer: &NodePeerId,
        host_address: Address,
    ) -> Result<JobResult, AttemptError> {
        let inner = &self.inner;
        let retry =
            |what: &str, e: &dyn std::fmt::Display| AttemptError::Retry(format!("{what}: {e}"));

        // Tell the host; wait for its claim on chain.
        if let Err(e) = inner
            .network
            .negotiate(peer, WireJobRequest::Posted { job })
            .await
        {
            tracing::debug!(%job, error = %e, "posted notice");
        }
        let claim_deadline = tokio::time::Instant::now() + inner.config.timeouts.claim;
        loop {
            let on_chain = inner
                .chain
                .job(job)
                .await
                .map_err(|e| retry("reading the job", &e))?;
            if on_chain.status == JobStatus::Claimed {
                break;
            }
            if on_chain.status != JobStatus::Posted {
                return Err(AttemptError::Retry(format!(
                    "job {job} is {}",
                    on_chain.status
                )));
            }
            if tokio::time::Instant::now() >= claim_deadline {
                return Err(AttemptError::Retry(
                    Error::ClaimTimeout {
                        job,
                        host: peer.clone(),
                    }
                    .to_string(),
                ));
            }
            tokio::time::sleep(inner.poll).await;
        }
        self.set_state(JobState::Claimed, Some(job));

        // Authenticate and stream.
        let signer = WalletClientSigner(self.wallet.clone());
        let prompt = PromptFrame {
            prompt: request.prompt.clone(),
            temperature_milli: request.temperature_milli,
            top_p_milli: request.top_p_milli,
            seed: request.seed,
        };
        let mut stream = inner
            .network
            .open_stream(peer, job, &signer, prompt)
            .await
            .map_err(|e| retry("opening the stream", &e))?;
        self.set_state(JobState::Processing, Some(job));
        let mut text = String::new();
        let mut streaming = false;
        let mut received = false;
        let done = loop {
            // The first token may wait for a slot in the host's queue; after it, a gap longer
            // than the stall timeout means the stream stalled.
            let wait = if received {
                inner.config.timeouts.stream_stall
            } else {
                inner.config.timeouts.claim
            };
            let next = tokio::select! {
                () = self.cancel.cancelled() => return Err(AttemptError::Retry("cancelled".into())),
                next = tokio::time::timeout(wait, stream.next()) => next,
            };
            received = true;
            match next {
                Err(_) => return Err(stream_failed(job, peer, format!("no token for {wait:?}"))),
                Ok(None) => {
                    return Err(stream_failed(
                        job,
                        peer,
                        "closed before the final frame".into(),
                    ));
                }
                Ok(Some(Err(e))) => return Err(stream_failed(job, peer, e.to_string())),
                Ok(Some(Ok(StreamEvent::Tokens(batch)))) => {
                    let chunk = batch.text();
                    text.push_str(&chunk);
                    if request.stream {
                        if !streaming {
                            streaming = true;
                            self.set_state(JobState::Streaming, Some(job));
                        }
                        let _ = inner.events.send(SdkEvent::TokenReceived {
                            job,
                            index: batch.first_index,
                            text: chunk.clone(),
                        });
                        // The application may have stopped reading; that is fine.
                        let _ = self.tokens.send(chunk).await;
                    }
                }
                Ok(Some(Ok(StreamEvent::Done(done)))) => break done,
            }
        };

        // Verify: what we received must be what the host signed.
        let cid = fabstir_storage::cid_of(text.as_bytes()).to_string();
        if cid != done.result_cid {
            inner.network.record_outcome(peer, false);
            return Err(AttemptError::Fatal(Error::ResultMismatch {
                job,
                streamed: cid,
                reported: done.result_cid,
            }));
        }
        self.set_state(JobState::Completed, Some(job));

        // Settle: the chain's JobCompleted must carry the same CID.
        let settle_deadline = tokio::time::Instant::now() + inner.config.timeouts.claim;
        let (paid, fee, refund, tokens_used) = loop {
            let events = inner
                .chain
                .job_events(job)
                .await
                .map_err(AttemptError::Fatal)?;
            let completed = events.into_iter().find_map(|e| match e.event {
                MarketplaceEvent::JobCompleted {
                    result_cid,
                    tokens_used,
                    paid,
                    fee,
                    refund,
                    ..
                } => Some((result_cid, tokens_used, paid, fee, refund)),
                _ => None,
            });
            if let Some((result_cid, tokens_used, paid, fee, refund)) = completed {
                if result_cid != cid.as_bytes() {
                    return Err(AttemptError::Fatal(Error::ResultMismatch {
                        job,
                        streamed: cid,
                        reported: String::from_utf8_lossy(&result_cid).into_owned(),
                    }));
                }
                break (paid, fee, refund, tokens_used.low_u64());
            }
            if tokio::time::Instant::now() >= settle_deadline {
                return Err(AttemptError::Fatal(Error::StreamFailed {
                    job,
                    host: peer.clone(),
                    reason: "the host did not submit its result in time".into(),
                }));
            }
            tokio::time::sleep(inner.poll).await;
        };
        self.set_state(JobState::PaymentReleased, Some(job));
        let _ = inner.events.send(SdkEvent::PaymentReleased {
            job,
            token: self.token.address(),
            paid_to_host: paid,
            fee,
            refund,
        });
        let _ = details;
        Ok(JobResult {
            job,
            host: peer.clone(),
            host_address,
            text,
            cid,
            tokens_used,
            token: self.token.clone(),
            paid,
            fee,
            refund,
            attempts: 1,
            failed_jobs: Vec::new(),
        })
    }

    async fn spawn_recovery(&self, job: JobId) {
        let inner = self.inner.clone();
        let wallet = self.wallet.clone();
        self.inner.recoveries.lock().await.spawn(async move {
            recover_escrow(&inner, job, &wallet).await;
        });
    }
}

fn stream_failed(job: JobId, host: &NodePeerId, reason: String) -> AttemptError {
    AttemptError::Retry(
        Error::StreamFailed {
            job,
            host: host.clone(),
            reason,
        }
        .to_string(),
    )
}

/// Gets a failed job's escrow back: cancel while posted, expire once the deadline passed.
/// Returns when the job no longer holds funds.
async fn recover_escrow(inner: &Inner, job: JobId, wallet: &LocalWallet) {
    loop {
        let on_chain = match inner.chain.job(job).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(%job, error = %e, "recovery: reading the job");
                tokio::time::sleep(inner.poll).await;
                continue;
            }
        };
        let attempt = match on_chain.status {
            JobStatus::Posted => inner.chain.cancel_job(job, wallet).await,
            JobStatus::Claimed => {
                // The latest block may be old on a quiet chain; the next block is mined at
                // least at the wall clock's time.
                let now = inner.chain.now().await.unwrap_or_default().max(unix_now());
                if now > on_chain.details.deadline {
                    inner.chain.expire_job(job, wallet).await
                } else {
                    let wait = Duration::from_secs(on_chain.details.deadline - now)
                        .min(Duration::from_secs(1));
                    tokio::time::sleep(wait.max(inner.poll)).await;
                    continue;
                }
            }
            _ => break,
        };
        match attempt {
            Ok(()) => {
                let _ = inner.events.send(SdkEvent::Refunded {
                    job,
                    amount: on_chain.amount,
                });
                inner.jobs.insert(job, JobState::Failed);
                tracing::info!(%job, "escrow recovered");
                break;
            }
            Err(e) => {
                tracing::debug!(%job, error = %e, "recovery attempt");
                tokio::time::sleep(inner.poll).await;
            }
        }
    }
}

/// A job's state and money as the chain records them.
async fn status_from_chain(chain: &dyn ChainLayer, job: JobId) -> Result<JobStatusReport> {
    let on_chain = chain.job(job).await?;
    let events = chain.job_events(job).await?;
    let mut report = JobStatusReport {
        job,
        state: match on_chain.status {
            JobStatus::Posted => JobState::Posted,
            JobStatus::Claimed => JobState::Claimed,
            JobStatus::Completed => JobState::PaymentReleased,
            _ => JobState::Failed,
        },
        client: on_chain.client,
        host: on_chain.host,
        token: on_chain.token,
        amount: on_chain.amount,
        result_cid: None,
        settlement: None,
        refunded: None,
    };
    for event in events {
        match event.event {
            MarketplaceEvent::JobCompleted {
                result_cid,
                paid,
                fee,
                refund,
                ..
            } => {
                report.result_cid = Some(String::from_utf8_lossy(&result_cid).into_owned());
                report.settlement = Some((paid, fee, refund));
            }
            MarketplaceEvent::JobCancelled { refund, .. }
            | MarketplaceEvent::JobExpired { refund, .. }
            | MarketplaceEvent::JobReleased { refund, .. } => report.refunded = Some(refund),
            _ => {}
        }
    }
    Ok(report)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
