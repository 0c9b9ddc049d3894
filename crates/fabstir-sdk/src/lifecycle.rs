//! The job lifecycle: one request tries ranked hosts until one serves it, each attempt
//! walking its own [`JobState`] machine through one function per step: negotiate, post,
//! await the claim, stream, verify, settle. A host at fault ends its attempt with
//! [`AttemptError::Retry`] (its escrow is recovered in the background and the next host is
//! tried); anything retrying cannot help ends the request with [`AttemptError::Fatal`].

use std::sync::Arc;

use ethers::signers::LocalWallet;
use fabstir_core::{JobId, JobState, ModelId, PaymentToken, ProviderQuery, SelectionCriteria};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::job::{JobRequest, JobResult};
use crate::sdk::Inner;
use crate::{Error, Result, SdkEvent};

mod attempt;

use attempt::Attempt;
pub(crate) use attempt::{CreditLimit, check_quote};

/// Why an attempt on one host ended without a result.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Try another host; this one is at fault (or just unavailable).
    Retry(Box<Error>),
    /// Stop: retrying cannot help (the client's funds, a bad result already paid for...).
    Fatal(Box<Error>),
}

impl AttemptError {
    pub(crate) fn retry(e: Error) -> Self {
        Self::Retry(Box::new(e))
    }

    pub(crate) fn fatal(e: Error) -> Self {
        Self::Fatal(Box::new(e))
    }
}

/// Runs one job request.
pub(crate) struct Runner {
    pub(crate) inner: Arc<Inner>,
    pub(crate) request: u64,
    pub(crate) wallet: Arc<LocalWallet>,
    pub(crate) token: PaymentToken,
    pub(crate) state: watch::Sender<(JobState, Option<JobId>)>,
    pub(crate) tokens: mpsc::Sender<String>,
    pub(crate) cancel: CancellationToken,
}

impl Runner {
    /// Tries hosts, best ranked first, until one serves the request or `max_attempts` failed.
    pub(crate) async fn run(&self, request: JobRequest) -> Result<JobResult> {
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
        let mut last = None;
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
            let mut attempt = Attempt::start(self, &host, attempts > 1);
            let peer = host.capabilities.peer_id.clone();
            match attempt.run(&request, model, &mut failed_jobs).await {
                Ok(mut result) => {
                    self.inner.network.record_outcome(&peer, true);
                    result.attempts = attempts;
                    result.failed_jobs = failed_jobs;
                    return Ok(result);
                }
                Err(AttemptError::Fatal(e)) => {
                    let job = attempt.machine.job;
                    attempt.machine.advance(JobState::Failed, job);
                    return Err(*e);
                }
                Err(AttemptError::Retry(e)) => {
                    self.inner.network.record_outcome(&peer, false);
                    criteria.exclude.push(peer.clone());
                    let failed_job = attempt.machine.job;
                    attempt.machine.advance(JobState::Failed, failed_job);
                    let reason = e.to_string();
                    tracing::warn!(host = %peer, %reason, "failing over");
                    let _ = self.inner.events.send(SdkEvent::Failover {
                        request: self.request,
                        failed_job,
                        host: peer,
                        attempt: attempts + 1,
                        reason,
                    });
                    last = Some(*e);
                }
            }
        }
        match last {
            Some(last) => Err(Error::AllAttemptsFailed {
                attempts,
                last: Box::new(last),
            }),
            None => {
                // No host was ever tried: the request's one machine fails where it started.
                Machine::new(self, false).advance(JobState::Failed, None);
                Err(Error::NoProviders(request.model))
            }
        }
    }

    pub(super) async fn spawn_recovery(&self, job: JobId) {
        let inner = self.inner.clone();
        let wallet = self.wallet.clone();
        self.inner.recoveries.lock().await.spawn(async move {
            crate::recovery::recover_escrow(&inner, job, wallet.signer()).await;
        });
    }
}

/// One state machine: every change goes through [`JobState::transition`] and is shown to the
/// handle, the SDK's job table and the event stream.
pub(super) struct Machine<'r> {
    pub(super) runner: &'r Runner,
    state: JobState,
    pub(super) job: Option<JobId>,
}

impl<'r> Machine<'r> {
    /// A new machine in `Negotiating`; `fresh` when it replaces a failed attempt's (the
    /// handle shows the new attempt from its start).
    pub(super) fn new(runner: &'r Runner, fresh: bool) -> Self {
        if fresh {
            runner.state.send_replace((JobState::Negotiating, None));
        }
        Self {
            runner,
            state: JobState::Negotiating,
            job: None,
        }
    }

    pub(super) fn advance(&mut self, to: JobState, job: Option<JobId>) {
        let from = self.state;
        match from.transition(to) {
            Ok(to) => self.state = to,
            Err(e) => {
                tracing::error!(error = %e, "state machine");
                return;
            }
        }
        self.job = job;
        let runner = self.runner;
        runner.state.send_replace((to, job));
        if let Some(job) = job {
            runner.inner.track(job, to);
        }
        let _ = runner.inner.events.send(SdkEvent::JobStateChanged {
            request: runner.request,
            job,
            from,
            to,
        });
    }
}
