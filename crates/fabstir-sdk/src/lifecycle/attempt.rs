//! One attempt on one host, a function per step: negotiate, post, await the claim, stream,
//! verify, settle. Each step advances the attempt's own [`Machine`].

use std::sync::Arc;

use ethers::signers::Signer as _;
use fabstir_core::cid::{Cid, cid_of};
use fabstir_core::job::prompt_hash;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::wire::{PromptFrame, Quote, QuoteRequest, StreamDone};
use fabstir_core::{
    DiscoveredNode, JobDetails, JobId, JobOutcome, JobPayment, JobRequirements, JobSettlement,
    JobState, JobStatus, ModelId, NodePeerId, StreamEvent, TokenAmount,
};
use futures::StreamExt;

use super::{AttemptError, Machine, Runner};
use crate::job::{JobRequest, JobResult};
use crate::network::WalletClientSigner;
use crate::sdk::Inner;
use crate::{Error, SdkEvent};

/// One attempt on one host.
pub(super) struct Attempt<'r> {
    pub(super) machine: Machine<'r>,
    host: &'r DiscoveredNode,
}

impl<'r> Attempt<'r> {
    pub(super) fn start(runner: &'r Runner, host: &'r DiscoveredNode, fresh: bool) -> Self {
        Self {
            machine: Machine::new(runner, fresh),
            host,
        }
    }

    fn runner(&self) -> &'r Runner {
        self.machine.runner
    }

    fn inner(&self) -> &'r Inner {
        &self.machine.runner.inner
    }

    fn peer(&self) -> &'r NodePeerId {
        &self.host.capabilities.peer_id
    }

    fn advance(&mut self, to: JobState, job: JobId) {
        self.machine.advance(to, Some(job));
    }

    pub(super) async fn run(
        &mut self,
        request: &JobRequest,
        model: ModelId,
        failed_jobs: &mut Vec<JobId>,
    ) -> Result<JobResult, AttemptError> {
        // The prompt's hash goes into the quote request and on chain: computed once.
        let hash = prompt_hash(&request.prompt);
        let (quote, escrow) = self.negotiate(request, model, hash).await?;
        let job = self.post(request, model, hash, &quote, escrow).await?;
        // From here on the escrow must come back if this host fails.
        let outcome = self.serve(request, job, quote.host).await;
        match &outcome {
            Ok(_) => {}
            Err(e) => {
                if let AttemptError::Retry(_) = e {
                    failed_jobs.push(job);
                }
                // Whatever failed after the post (a broken stream, a late or wrong settlement),
                // the escrow that is still open comes back: ask to close, then expire.
                self.runner().spawn_recovery(job).await;
            }
        }
        outcome
    }

    async fn serve(
        &mut self,
        request: &JobRequest,
        job: JobId,
        host_address: Address,
    ) -> Result<JobResult, AttemptError> {
        self.announce(job).await;
        self.await_claim(job).await?;
        let (text, done, counted) = self.stream(request, job).await?;
        let cid = self.verify(job, &text, done)?;
        let settlement = self.settle(job, cid, counted).await?;
        Ok(JobResult {
            job,
            host: self.peer().clone(),
            host_address,
            text,
            cid,
            tokens_used: settlement.tokens_used,
            tokens_receipted: counted,
            token: self.runner().token.clone(),
            paid: settlement.paid,
            fee: settlement.fee,
            refund: settlement.refund,
            attempts: 1,
            failed_jobs: Vec::new(),
        })
    }

    /// Asks the host for a quote at the request's terms and checks it against the budget.
    async fn negotiate(
        &mut self,
        request: &JobRequest,
        model: ModelId,
        hash: H256,
    ) -> Result<(Quote, TokenAmount), AttemptError> {
        let runner = self.runner();
        let token = &runner.token;
        let offered = request
            .max_price
            .or_else(|| self.host.capabilities.price_for(token.address()))
            .unwrap_or_default();
        let ask = QuoteRequest {
            model,
            max_tokens: request.max_tokens,
            token: token.address(),
            offered_price_per_token: offered,
            prompt_hash: hash,
            client: runner.wallet.address(),
        };
        let quote = match self.inner().network.quote(self.peer(), ask.clone()).await {
            Ok(quote) => quote,
            Err(e @ (Error::HostDeclined { .. } | Error::UnexpectedAnswer { .. })) => {
                return Err(AttemptError::retry(e));
            }
            Err(e) => return Err(retry("negotiation", e)),
        };
        let credit = CreditLimit {
            tokens: self.inner().config.max_credit_window,
            value: request.max_credit,
        };
        check_quote(&quote, &ask, &self.host.capabilities, credit).map_err(|reason| {
            AttemptError::retry(Error::BadQuote {
                host: self.peer().clone(),
                reason,
            })
        })?;
        let escrow = quote
            .price_per_token
            .checked_mul(request.max_tokens)
            .ok_or(AttemptError::retry(Error::EscrowOverflow))?;
        if let Some(budget) = request.budget
            && escrow > budget
        {
            return Err(AttemptError::retry(Error::OverBudget {
                budget: token.format_amount(budget),
                needed: token.format_amount(escrow),
            }));
        }
        Ok((quote, escrow))
    }

    /// Posts the job at the quoted price and pays its escrow.
    async fn post(
        &mut self,
        request: &JobRequest,
        model: ModelId,
        hash: H256,
        quote: &Quote,
        escrow: TokenAmount,
    ) -> Result<JobId, AttemptError> {
        let inner = self.inner();
        let runner = self.runner();
        let now = inner.chain.now().await.map_err(AttemptError::fatal)?;
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
            token: runner.token.clone(),
            amount: escrow,
        };
        let job = inner
            .chain
            .post_job(&details, &requirements, &payment, runner.wallet.signer())
            .await
            .map_err(AttemptError::fatal)?;
        self.advance(JobState::Posted, job);
        Ok(job)
    }

    /// Tells the host the job is posted; it may claim it from the chain's events anyway.
    async fn announce(&self, job: JobId) {
        if let Err(e) = self.inner().network.announce_posted(self.peer(), job).await {
            tracing::debug!(%job, error = %e, "posted notice");
        }
    }

    /// Waits for the host's claim on chain, up to the claim timeout.
    async fn await_claim(&mut self, job: JobId) -> Result<(), AttemptError> {
        let inner = self.inner();
        let deadline = tokio::time::Instant::now() + inner.config.timeouts.claim;
        loop {
            let on_chain = inner
                .chain
                .job(job)
                .await
                .map_err(|e| retry("reading the job", e))?;
            match on_chain.status {
                JobStatus::Claimed => break,
                JobStatus::Posted => {}
                status => return Err(AttemptError::retry(Error::JobNotClaimable { job, status })),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AttemptError::retry(Error::ClaimTimeout {
                    job,
                    host: self.peer().clone(),
                }));
            }
            tokio::time::sleep(inner.config.poll_interval).await;
        }
        self.advance(JobState::Claimed, job);
        Ok(())
    }

    /// Authenticates, sends the prompt and collects the streamed text up to the final frame.
    async fn stream(
        &mut self,
        request: &JobRequest,
        job: JobId,
    ) -> Result<(String, StreamDone, u64), AttemptError> {
        let runner = self.runner();
        let inner = self.inner();
        let peer = self.peer();
        let mut received = 0u64;
        let result = self.stream_into(request, job, &mut received).await;
        if result.is_err() && received > 0 {
            // The text of a failed attempt is not part of the result: tell the application.
            let _ = inner.events.send(SdkEvent::TokensDiscarded {
                job,
                host: peer.clone(),
                tokens: received,
            });
        }
        let _ = runner;
        result
    }

    /// [`Self::stream`]'s loop; counts the tokens received in `received`.
    async fn stream_into(
        &mut self,
        request: &JobRequest,
        job: JobId,
        received_tokens: &mut u64,
    ) -> Result<(String, StreamDone, u64), AttemptError> {
        let runner = self.runner();
        let inner = self.inner();
        let peer = self.peer();
        // Tokens with text: what the receipts count, and what the settlement must pay for.
        let mut counted = 0u64;
        let signer = Arc::new(WalletClientSigner(runner.wallet.clone()));
        let prompt = PromptFrame {
            prompt: request.prompt.clone(),
            temperature_milli: request.temperature_milli,
            top_p_milli: request.top_p_milli,
            seed: request.seed,
        };
        let mut stream = inner
            .network
            .open_stream(peer, job, signer, prompt)
            .await
            .map_err(|e| retry("opening the stream", e))?;
        self.advance(JobState::Processing, job);
        let mut text = String::new();
        let mut streaming = false;
        let mut received = false;
        loop {
            // The first token may wait for a slot in the host's queue; after it, a gap longer
            // than the stall timeout means the stream stalled.
            let wait = if received {
                inner.config.timeouts.stream_stall
            } else {
                inner.config.timeouts.claim
            };
            let next = tokio::select! {
                () = runner.cancel.cancelled() => return Err(AttemptError::retry(Error::Cancelled)),
                next = tokio::time::timeout(wait, stream.next()) => next,
            };
            received = true;
            let batch = match next {
                Err(_) => return Err(stream_failed(job, peer, format!("no token for {wait:?}"))),
                Ok(None) => {
                    return Err(stream_failed(
                        job,
                        peer,
                        "closed before the final frame".into(),
                    ));
                }
                Ok(Some(Err(e))) => return Err(stream_failed(job, peer, e.to_string())),
                Ok(Some(Ok(StreamEvent::Done(done)))) => return Ok((text, done, counted)),
                Ok(Some(Ok(StreamEvent::Tokens(batch)))) => batch,
            };
            let tokens = u64::try_from(batch.tokens.len()).unwrap_or(u64::MAX);
            *received_tokens = received_tokens.saturating_add(tokens);
            // What is buffered is bounded by the job's terms (and the protocol's cap on one
            // token's text): a host sending more is cut off.
            if *received_tokens > u64::from(request.max_tokens) {
                return Err(stream_failed(
                    job,
                    peer,
                    format!("more than the job's {} tokens", request.max_tokens),
                ));
            }
            counted += batch.tokens.iter().filter(|t| !t.text.is_empty()).count() as u64;
            let chunk = batch.text();
            text.push_str(&chunk);
            if request.stream {
                if !streaming {
                    streaming = true;
                    self.advance(JobState::Streaming, job);
                }
                let _ = inner.events.send(SdkEvent::TokenReceived {
                    job,
                    index: batch.first_index,
                    text: chunk.clone(),
                });
                // The application may have stopped reading; that is fine.
                let _ = runner.tokens.send(chunk).await;
            }
        }
    }

    /// What was received must be what the host signed.
    fn verify(&mut self, job: JobId, text: &str, done: StreamDone) -> Result<Cid, AttemptError> {
        let cid = cid_of(text.as_bytes());
        if cid != done.result_cid {
            self.inner().network.record_outcome(self.peer(), false);
            return Err(AttemptError::fatal(Error::ResultMismatch {
                job,
                streamed: Box::new(cid),
                reported: Some(Box::new(done.result_cid)),
            }));
        }
        self.advance(JobState::Completed, job);
        Ok(cid)
    }

    /// Waits for the settlement on chain, which must carry the CID that was verified and pay
    /// for exactly the `counted` tokens this client receipted.
    async fn settle(
        &mut self,
        job: JobId,
        cid: Cid,
        counted: u64,
    ) -> Result<JobSettlement, AttemptError> {
        let inner = self.inner();
        let deadline = tokio::time::Instant::now() + inner.config.timeouts.claim;
        let late = || {
            AttemptError::fatal(Error::StreamFailed {
                job,
                host: self.peer().clone(),
                reason: "the host did not submit its result in time".into(),
            })
        };
        let settlement = loop {
            match inner
                .chain
                .job_outcome(job)
                .await
                .map_err(AttemptError::fatal)?
            {
                Some(JobOutcome::Settled(settlement)) => break settlement,
                Some(JobOutcome::Refunded { .. }) => return Err(late()),
                None if tokio::time::Instant::now() >= deadline => return Err(late()),
                None => tokio::time::sleep(inner.config.poll_interval).await,
            }
        };
        if settlement.result_cid != Some(cid) {
            return Err(AttemptError::fatal(Error::ResultMismatch {
                job,
                streamed: Box::new(cid),
                reported: settlement.result_cid.map(Box::new),
            }));
        }
        if settlement.tokens_used != counted {
            return Err(AttemptError::fatal(Error::SettlementMismatch {
                job,
                receipted: counted,
                paid_for: settlement.tokens_used,
            }));
        }
        self.advance(JobState::PaymentReleased, job);
        let _ = inner.events.send(SdkEvent::PaymentReleased {
            job,
            token: self.runner().token.address(),
            paid_to_host: settlement.paid,
            fee: settlement.fee,
            refund: settlement.refund,
        });
        Ok(settlement)
    }
}

/// Checks a quote against what was asked and what the host signed, before anything is paid:
/// the model, the token and the number of tokens asked for, the host's address in its signed
/// capabilities, a price no higher than the offer and than the capabilities' price, and a
/// credit window no larger than the client accepts, in tokens and in value.
pub(crate) fn check_quote(
    quote: &Quote,
    ask: &QuoteRequest,
    capabilities: &fabstir_core::node::NodeCapabilities,
    credit: CreditLimit,
) -> std::result::Result<(), String> {
    if quote.model != ask.model {
        return Err(format!("quotes model {}, asked {}", quote.model, ask.model));
    }
    if quote.token != ask.token {
        return Err(format!(
            "quotes token {:#x}, asked {:#x}",
            quote.token, ask.token
        ));
    }
    if quote.max_tokens < ask.max_tokens {
        return Err(format!(
            "quotes {} tokens, asked {}",
            quote.max_tokens, ask.max_tokens
        ));
    }
    if quote.host != capabilities.eth_address {
        return Err(format!(
            "quotes for {:#x}, its signed capabilities name {:#x}",
            quote.host, capabilities.eth_address
        ));
    }
    if quote.price_per_token > ask.offered_price_per_token {
        return Err(format!(
            "quotes {} per token, the most offered is {}",
            quote.price_per_token.base_units(),
            ask.offered_price_per_token.base_units()
        ));
    }
    match capabilities.price_for(ask.token) {
        Some(signed) if quote.price_per_token <= signed => {}
        signed => {
            return Err(format!(
                "quotes {} per token above its signed price {:?}",
                quote.price_per_token.base_units(),
                signed.map(|p| p.base_units())
            ));
        }
    }
    if quote.credit_window > credit.tokens {
        return Err(format!(
            "asks a credit window of {} tokens, at most {} accepted",
            quote.credit_window, credit.tokens
        ));
    }
    if let Some(most) = credit.value {
        let at_risk = quote.price_per_token.checked_mul(quote.credit_window);
        if at_risk.is_none_or(|at_risk| at_risk > most) {
            return Err(format!(
                "asks a credit window of {} tokens at {} per token, above the {} the client risks",
                quote.credit_window,
                quote.price_per_token.base_units(),
                most.base_units()
            ));
        }
    }
    Ok(())
}

/// The largest credit window a client accepts: in tokens, and in value when it sets one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CreditLimit {
    /// Tokens (`SdkConfig::max_credit_window`).
    pub(crate) tokens: u32,
    /// Base units of the payment token (`JobRequest::max_credit`).
    pub(crate) value: Option<TokenAmount>,
}

fn retry(what: &'static str, source: Error) -> AttemptError {
    AttemptError::retry(Error::While {
        what,
        source: Box::new(source),
    })
}

fn stream_failed(job: JobId, host: &NodePeerId, reason: String) -> AttemptError {
    AttemptError::retry(Error::StreamFailed {
        job,
        host: host.clone(),
        reason,
    })
}
