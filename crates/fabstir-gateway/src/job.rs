//! One request through the marketplace: checks and caps first (nothing is spent on a request
//! that is refused), then the SDK's job, driven by a task of its own that streams the text to
//! the HTTP side, settles the budget and writes the request's log line, whether or not the
//! caller is still there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabstir_core::{ModelId, ProviderQuery, TokenAmount};
use fabstir_sdk::{JobHandle, JobRequest, JobResult};
use tokio::sync::mpsc;

use crate::api::{Params, Settlement, Usage};
use crate::budget::{Cap, Hold};
use crate::{ApiError, Gateway};

/// How many text pieces may wait for a slow HTTP caller before the job waits for it.
const TEXT_BUFFER: usize = 256;

/// What an endpoint asks the marketplace for.
#[derive(Debug)]
pub(crate) struct Ask {
    /// The endpoint's name, for metrics and the log.
    pub(crate) endpoint: &'static str,
    /// The model's name: it routes the job.
    pub(crate) model: String,
    /// The prompt the host completes.
    pub(crate) prompt: String,
    /// Sampling and streaming parameters.
    pub(crate) params: Params,
    /// When the request arrived.
    pub(crate) started: Instant,
}

/// What the job's task sends to the HTTP side.
#[derive(Debug)]
pub(crate) enum Output {
    /// Generated text, in order.
    Text(String),
    /// The job ended: its settlement, or why it failed.
    Done(Result<Box<Finished>, ApiError>),
}

/// A job that ended well.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// The whole text.
    pub(crate) text: String,
    /// `stop` or `length`.
    pub(crate) finish_reason: &'static str,
    /// From the receipts (what the chain paid).
    pub(crate) usage: Usage,
    /// The `fabstir` extension.
    pub(crate) settlement: Settlement,
    /// The text sent as it arrived is not [`Self::text`]: a host failed mid-stream and another
    /// completed the job, so what a streaming caller already has cannot be made whole.
    pub(crate) restarted: bool,
}

/// The job's terms, checked before anything is spent.
struct Terms {
    request: JobRequest,
    hold: Hold,
}

impl Gateway {
    /// Checks the request against the caps and the network, starts its job, and returns the
    /// channel its output arrives on.
    pub(crate) async fn start(
        self: &Arc<Self>,
        ask: Ask,
    ) -> Result<mpsc::Receiver<Output>, ApiError> {
        let Terms { request, hold } = self.terms(&ask).await?;
        let max_tokens = request.max_tokens;
        let over_cap = over_cap(hold.cap());
        let handle = self.sdk.submit_job(request).await;
        let handle = match handle {
            Ok(handle) => handle,
            Err(e) => {
                // Refused before anything was posted.
                hold.settle(TokenAmount::ZERO);
                return Err(ApiError::from_sdk(&e, &over_cap));
            }
        };
        let (tx, rx) = mpsc::channel(TEXT_BUFFER);
        let gateway = self.clone();
        tokio::spawn(async move {
            gateway.drive(handle, hold, tx, ask, max_tokens).await;
        });
        Ok(rx)
    }

    /// Validates the parameters, takes the budget's hold and checks that a host serves the
    /// model within the price cap and the hold.
    async fn terms(&self, ask: &Ask) -> Result<Terms, ApiError> {
        let params = &ask.params;
        if ask.model.is_empty() {
            return Err(ApiError::bad_request(Some("model"), "model is required"));
        }
        if params.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request(Some("n"), "only n = 1 is served"));
        }
        let max_tokens = params
            .max_completion_tokens
            .or(params.max_tokens)
            .unwrap_or(self.config.default_max_tokens);
        if max_tokens == 0 {
            return Err(ApiError::bad_request(
                Some("max_tokens"),
                "max_tokens must be at least 1",
            ));
        }
        let temperature = params.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_request(
                Some("temperature"),
                "temperature must be between 0 and 2",
            ));
        }
        let top_p = params.top_p.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 {
            return Err(ApiError::bad_request(
                Some("top_p"),
                "top_p must be above 0 and at most 1",
            ));
        }
        let token = &self.token;
        let bound = self
            .config
            .max_price
            .and_then(|p| p.checked_mul(max_tokens));
        let hold = self.budget.hold(bound).map_err(|spent| {
            ApiError::day_cap_reached(format!(
                "the daily spending cap of {} is used up",
                token.format_amount(spent.cap)
            ))
        })?;
        // A request refused here spent nothing: its hold is released, not counted.
        if let Err(refusal) = self.affordable(ask, max_tokens, &hold).await {
            hold.settle(TokenAmount::ZERO);
            return Err(refusal);
        }
        let request = JobRequest {
            budget: hold.amount(),
            max_price: self.config.max_price,
            stream: true,
            // Thousandths; both were range-checked above.
            temperature_milli: (temperature * 1000.0).round() as u32,
            top_p_milli: (top_p * 1000.0).round() as u32,
            seed: params.seed.unwrap_or_else(rand::random),
            ..JobRequest::new(&ask.model, ask.prompt.as_str())
                .pay_with(&self.config.token)
                .max_tokens(max_tokens)
        };
        Ok(Terms { request, hold })
    }

    /// Checks that a host serves the model within the price cap and the hold.
    async fn affordable(&self, ask: &Ask, max_tokens: u32, hold: &Hold) -> Result<(), ApiError> {
        let token = &self.token;
        let query = ProviderQuery::new(ModelId::from_name(&ask.model), token.address());
        let hosts = self.sdk.discover(&query).await.map_err(|e| {
            tracing::warn!(error = %e, "discovery");
            ApiError::upstream("discovery failed")
        })?;
        let cheapest = hosts
            .iter()
            .filter_map(|h| h.capabilities.price_for(token.address()))
            .min()
            .ok_or_else(|| ApiError::model_not_found(&ask.model))?;
        if let Some(max) = self.config.max_price
            && cheapest > max
        {
            return Err(ApiError::no_host(format!(
                "hosts serve `{}` from {} per token, above the gateway's maximum of {}",
                ask.model,
                token.format_amount(cheapest),
                token.format_amount(max)
            )));
        }
        let needed = cheapest.checked_mul(max_tokens);
        if let Some(allowed) = hold.amount()
            && needed.is_none_or(|needed| needed > allowed)
        {
            let needed = needed.map_or("more than 2^256".to_owned(), |n| token.format_amount(n));
            return Err(over_cap(hold.cap())(format!(
                "{max_tokens} tokens from the cheapest host cost {needed}; the cap allows {}",
                token.format_amount(allowed)
            )));
        }
        Ok(())
    }

    /// Streams the job's text to `tx` (cancelling the job if the caller went away), then
    /// settles the budget, counts, logs and sends the outcome.
    async fn drive(
        self: Arc<Self>,
        mut handle: JobHandle,
        hold: Hold,
        tx: mpsc::Sender<Output>,
        ask: Ask,
        max_tokens: u32,
    ) {
        let mut first_token: Option<Duration> = None;
        let mut sent = String::new();
        while let Some(text) = handle.next_tokens().await {
            if first_token.is_none() {
                let elapsed = ask.started.elapsed();
                self.metrics.first_token.observe(elapsed.as_secs_f64());
                first_token = Some(elapsed);
            }
            sent.push_str(&text);
            if tx.send(Output::Text(text)).await.is_err() {
                handle.cancel();
                break;
            }
        }
        let posted = handle.job_id().is_some();
        let cap = hold.cap();
        let outcome = handle.result().await;
        let ttft_ms = first_token.map(|d| d.as_millis() as u64);
        let total_ms = ask.started.elapsed().as_millis() as u64;
        let done = match outcome {
            Ok(result) => {
                hold.settle(result.paid.checked_add(result.fee).unwrap_or(result.paid));
                let restarted = sent != result.text;
                let finished = self.finished(result, max_tokens, restarted);
                self.metrics.tokens.inc_by(finished.usage.completion_tokens);
                let s = &finished.settlement;
                if let Ok(units) = s.paid.parse::<f64>() {
                    self.metrics.paid.inc_by(units);
                }
                tracing::info!(
                    endpoint = ask.endpoint,
                    model = %ask.model,
                    host = %s.host,
                    job = s.job,
                    tokens = finished.usage.completion_tokens,
                    paid = %format_args!("{} {}", s.paid, s.token),
                    ttft_ms,
                    total_ms,
                    "request served"
                );
                Ok(Box::new(finished))
            }
            Err(e) => {
                // Nothing posted: nothing spent. Posted: the outcome is not known here (the
                // host may settle receipted tokens), so the hold stays counted as spent.
                if posted {
                    drop(hold);
                } else {
                    hold.settle(TokenAmount::ZERO);
                }
                tracing::info!(
                    endpoint = ask.endpoint,
                    model = %ask.model,
                    error = %e,
                    ttft_ms,
                    total_ms,
                    "request failed"
                );
                Err(ApiError::from_sdk(&e, over_cap(cap)))
            }
        };
        let _ = tx.send(Output::Done(done)).await;
    }

    fn finished(&self, result: JobResult, max_tokens: u32, restarted: bool) -> Finished {
        let token = &result.token;
        let finish_reason = if result.tokens_used >= u64::from(max_tokens) {
            "length"
        } else {
            "stop"
        };
        Finished {
            usage: Usage::completion(result.tokens_receipted),
            finish_reason,
            settlement: Settlement {
                job: result.job.0,
                host: result.host.to_string(),
                host_address: format!("{:#x}", result.host_address),
                result_cid: result.cid,
                token: token.symbol.clone(),
                paid: result.paid.format(token.decimals),
                paid_base_units: result.paid.base_units().to_string(),
                fee: result.fee.format(token.decimals),
                refund: result.refund.format(token.decimals),
                tokens_receipted: result.tokens_receipted,
                attempts: result.attempts,
            },
            text: result.text,
            restarted,
        }
    }
}

/// The answer to a request over the cap that bounded it.
fn over_cap(cap: Cap) -> impl Fn(String) -> ApiError {
    move |message| match cap {
        Cap::Day => ApiError::day_cap_reached(message),
        Cap::Request | Cap::None => ApiError::over_request_cap(message),
    }
}
