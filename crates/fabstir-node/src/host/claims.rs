//! Quotes, claims and the client check before a stream: what the host answers a peer's job
//! message, how it claims a job once (from the chain watcher and a peer at once), and who may
//! open a stream for a claimed job.

use fabstir_contracts::{JobStatus, OnChainJob};
use fabstir_core::JobId;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::wire::{
    NegotiationRequest, NegotiationResponse, Quote, QuoteRequest, RejectReason, StreamError,
    StreamErrorCode,
};
use fabstir_p2p::ClientProof;

use fabstir_core::clock::unix_now;

use super::{Host, Terms};

/// What the host knows of a job it claimed.
#[derive(Debug, Clone)]
pub(super) struct ClaimedJob {
    job: OnChainJob,
    /// A stream was authorized for the job: one payment buys one stream.
    served: bool,
    /// The stored result's CID, once the run produced one.
    result_cid: Option<Cid>,
    /// The job was settled or given back; nothing more is sent for it.
    finished: bool,
}

impl Host {
    /// Answers a peer's job message: a quote, or whether the host takes a posted job.
    pub(super) async fn answer(&self, request: NegotiationRequest) -> NegotiationResponse {
        match request {
            NegotiationRequest::Quote(quote) => self.quote(&quote),
            NegotiationRequest::Posted { job } => match self.ensure_claimed(job).await {
                Ok(_) => NegotiationResponse::Accepted { job },
                Err((reason, message)) => {
                    self.metrics.jobs_refused.inc();
                    NegotiationResponse::Rejected { reason, message }
                }
            },
        }
    }

    fn quote(&self, request: &QuoteRequest) -> NegotiationResponse {
        let price = match self.check_terms(&Terms::of_quote(request)) {
            Ok(price) => price,
            Err(refusal) => {
                return NegotiationResponse::Rejected {
                    reason: refusal.reason(),
                    message: refusal.to_string(),
                };
            }
        };
        if self.busy() {
            return NegotiationResponse::Rejected {
                reason: RejectReason::Busy,
                message: "at capacity".into(),
            };
        }
        NegotiationResponse::Quote(Quote {
            host: self.address,
            model: request.model,
            price_per_token: price,
            token: request.token,
            max_tokens: request.max_tokens,
            valid_until: unix_now() + self.limits.quote_validity.as_secs(),
            credit_window: self.limits.credit_window,
        })
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
                self.check_terms(&Terms::of_job(&job))
                    .map_err(|refusal| (refusal.reason(), refusal.to_string()))?;
                if self.busy() {
                    return Err((RejectReason::Busy, "at capacity".into()));
                }
                match self.contracts.claim_job(id, &self.sender).await {
                    Ok(_) => {}
                    Err(fabstir_contracts::Error::JobAlreadyClaimed { claimer, .. })
                        if claimer == self.address => {}
                    Err(e) => {
                        self.metrics.errors.inc();
                        let message = super::internal("claiming the job failed", &e);
                        return Err((RejectReason::JobNotFound, message));
                    }
                }
                self.metrics.jobs_claimed.inc();
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
        *claimed = Some(ClaimedJob {
            job: job.clone(),
            served: false,
            result_cid: None,
            finished: false,
        });
        Ok(job)
    }

    /// The job `id` if this host claimed it.
    pub(super) async fn claimed_job(&self, id: JobId) -> Option<OnChainJob> {
        let slot = self.claims.get(&id)?.clone();
        let claimed = slot.lock().await;
        claimed.as_ref().map(|c| c.job.clone())
    }

    /// Lets `client` (recovered from its challenge answer) open a stream for `job` only if it
    /// posted the job; claims the job first if need be, but never for a stranger. A job served
    /// already is refused (`AlreadyServed`), and so is one the chain no longer holds as claimed
    /// by this host (`JobClosed`: expired, closing, released), re-read from the chain now.
    pub(super) async fn authorize(
        &self,
        job: JobId,
        proof: &ClientProof,
    ) -> Result<Address, StreamError> {
        let client = self.admit(job, proof).await?;
        self.check_servable(job, false).await?;
        Ok(client)
    }

    /// Whether `wallet` is a contract that accepts `signature` over `digest` (ERC-1271). A chain
    /// that cannot be read accepts nothing.
    pub(super) async fn wallet_accepts(
        &self,
        wallet: Address,
        digest: H256,
        signature: &[u8],
    ) -> bool {
        match self
            .contracts
            .is_valid_signature(wallet, digest, signature)
            .await
        {
            Ok(valid) => valid,
            Err(e) => {
                tracing::warn!(%wallet, error = %e, "cannot ask a wallet about a signature");
                false
            }
        }
    }

    /// Consumes `job` once its stream's prompt is accepted: atomically, so of two streams for
    /// one job only one generates; the other gets `AlreadyServed`. One payment buys one stream.
    pub(super) async fn consume(&self, job: JobId) -> Result<(), StreamError> {
        self.check_servable(job, true).await
    }

    /// Whether `job` may still be served (not served yet, claimed on chain, before its
    /// deadline): read from the chain when the stream is authorized; with `consume` (the
    /// prompt accepted, one round trip later) the deadline is checked locally and the job is
    /// marked served under the same lock.
    async fn check_servable(&self, job: JobId, consume: bool) -> Result<(), StreamError> {
        let slot = self
            .claims
            .get(&job)
            .map(|entry| entry.clone())
            .ok_or_else(|| StreamError {
                code: StreamErrorCode::UnknownJob,
                message: format!("job {job} is not claimed here"),
            })?;
        let mut claimed = slot.lock().await;
        let entry = claimed.as_mut().ok_or_else(|| StreamError {
            code: StreamErrorCode::UnknownJob,
            message: format!("job {job} is not claimed here"),
        })?;
        if entry.served {
            self.metrics.jobs_refused.inc();
            return Err(StreamError {
                code: StreamErrorCode::AlreadyServed,
                message: format!("job {job} was served already"),
            });
        }
        if consume {
            // The stream's authorization read the chain one round trip ago (the prompt
            // frame); the deadline is checked again here, locally.
            if entry.job.details.deadline < unix_now() {
                self.metrics.jobs_refused.inc();
                return Err(StreamError {
                    code: StreamErrorCode::JobClosed,
                    message: format!("job {job} is past its deadline"),
                });
            }
            entry.served = true;
            return Ok(());
        }
        let (status, deadline) = self
            .contracts
            .job_status(job)
            .await
            .map_err(|e| StreamError {
                code: StreamErrorCode::Unavailable,
                message: match e {
                    fabstir_contracts::Error::JobNotFound(_) => format!("job {job} not found"),
                    _ => "the chain cannot be read".to_owned(),
                },
            })?;
        if status != JobStatus::Claimed || deadline < unix_now() {
            self.metrics.jobs_refused.inc();
            return Err(StreamError {
                code: StreamErrorCode::JobClosed,
                message: format!("job {job} is {status}"),
            });
        }
        Ok(())
    }

    /// Keeps the CID of `job`'s stored result for its settlement.
    pub(super) async fn record_result(&self, job: JobId, cid: Cid) {
        if let Some(slot) = self.claims.get(&job).map(|e| e.clone())
            && let Some(entry) = slot.lock().await.as_mut()
        {
            entry.result_cid = Some(cid);
        }
    }

    /// Marks `job` finished (settled or given back) and returns its result CID, once: `None`
    /// if it was finished already, never served (a stream refused before generating leaves
    /// the job to its client's next try), or is not claimed here.
    pub(super) async fn finish(&self, job: JobId) -> Option<Option<Cid>> {
        let slot = self.claims.get(&job).map(|e| e.clone())?;
        let mut claimed = slot.lock().await;
        let entry = claimed.as_mut()?;
        if entry.finished || !entry.served {
            return None;
        }
        entry.finished = true;
        Some(entry.result_cid)
    }

    /// The authentication half of [`Self::authorize`]: `proof` is from the client who posted
    /// `job`, which is (now) claimed by this host; answers that client.
    async fn admit(&self, job: JobId, proof: &ClientProof) -> Result<Address, StreamError> {
        if let Some(claimed) = self.claimed_job(job).await {
            return self.check_client(&claimed, proof).await;
        }
        // Check who posted the job before claiming it: a stranger's stream must not make this
        // host claim anything.
        let posted = self.contracts.job(job).await.map_err(|e| StreamError {
            code: StreamErrorCode::UnknownJob,
            message: match e {
                fabstir_contracts::Error::JobNotFound(_) => format!("job {job} not found"),
                _ => "the chain cannot be read".to_owned(),
            },
        })?;
        let client = self.check_client(&posted, proof).await?;
        if posted.status != JobStatus::Posted && posted.status != JobStatus::Claimed {
            return Err(StreamError {
                code: StreamErrorCode::JobClosed,
                message: format!("job {job} is {}", posted.status),
            });
        }
        self.ensure_claimed(job)
            .await
            .map_err(|(_, message)| StreamError {
                code: StreamErrorCode::UnknownJob,
                message,
            })?;
        Ok(client)
    }

    /// Whether `proof` is the job's client's: signed with its key, or accepted by its wallet.
    async fn check_client(
        &self,
        job: &OnChainJob,
        proof: &ClientProof,
    ) -> Result<Address, StreamError> {
        let terms = Terms::of_job(job);
        let by_key = proof.recovered.map(|signer| terms.check_client(signer));
        match by_key {
            Some(Ok(())) => return Ok(job.client),
            _ if self
                .wallet_accepts(job.client, proof.digest, &proof.signature)
                .await =>
            {
                return Ok(job.client);
            }
            _ => {}
        }
        self.metrics.jobs_refused.inc();
        let message = match by_key {
            Some(Err(refusal)) => format!("{refusal} of job {}", job.id),
            _ => format!("not signed by the client of job {}", job.id),
        };
        Err(StreamError {
            code: StreamErrorCode::AuthFailed,
            message,
        })
    }
}
