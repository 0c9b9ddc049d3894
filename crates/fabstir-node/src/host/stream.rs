//! Serving an authorized client's stream: the prompt is checked against the job's hash, the job
//! waits for a slot, tokens are generated and streamed, the text is stored by CID and the
//! result signed; settlement follows in the background.

use std::sync::Arc;
use std::time::Instant;

use fabstir_contracts::OnChainJob;
use fabstir_core::auth;
use fabstir_core::primitives::{Address, keccak256};
use fabstir_core::wire::{PromptFrame, StreamDone, StreamError, StreamErrorCode, StreamToken};
use fabstir_core::{JobId, ModelId};
use fabstir_inference::GenerateRequest;
use fabstir_p2p::StreamSink;

use super::{Host, Terms};

/// What a generation delivered.
pub(super) struct Generated {
    /// The text.
    pub(super) text: String,
    /// Tokens generated.
    pub(super) tokens: u64,
    /// The client went away or cancelled before the end.
    pub(super) cancelled: bool,
}

impl Host {
    /// Runs `job` for its `client`: generates, streams to `sink`, stores, signs and settles.
    pub(super) async fn serve_stream(
        self: &Arc<Self>,
        job: JobId,
        client: Address,
        prompt: PromptFrame,
        sink: StreamSink,
    ) -> Result<StreamDone, StreamError> {
        let claimed = self
            .claimed_job(job)
            .await
            .filter(|j| Terms::of_job(j).check_client(client).is_ok());
        let Some(claimed) = claimed else {
            return Err(StreamError {
                code: StreamErrorCode::UnknownJob,
                message: format!("job {job} is not claimed for {client:#x}"),
            });
        };
        if keccak256(prompt.prompt.as_bytes()) != claimed.details.prompt_hash.0 {
            self.metrics.jobs_refused.inc();
            return Err(StreamError {
                code: StreamErrorCode::PromptMismatch,
                message: "the prompt does not match the job's prompt hash".into(),
            });
        }
        self.consume(job).await?;
        let outcome = self.generate(&claimed, &prompt, &sink).await;
        let generated = match outcome {
            Ok(generated) => generated,
            Err(error) => {
                self.metrics.errors.inc();
                self.release(job).await;
                return Err(error);
            }
        };
        let tokens_used = generated.tokens;
        self.metrics.tokens_generated.inc_by(tokens_used);
        let cid = match self.store.put(generated.text.into_bytes().into()).await {
            Ok(cid) => cid,
            Err(e) => {
                self.metrics.errors.inc();
                self.release(job).await;
                return Err(StreamError {
                    code: StreamErrorCode::InferenceFailed,
                    message: super::internal("storing the result failed", &e),
                });
            }
        };
        let message = auth::result_message(self.chain_id, job, &cid, tokens_used);
        let signature = self.sign(&message);
        // Settled once the stream ends, with the client's newest receipt (even when the
        // client stopped early: what it receipted is paid).
        self.record_owner(job, client, &cid).await;
        self.record_result(job, cid).await;
        if generated.cancelled {
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

    /// Generates and streams the job's tokens until the end or until the client goes.
    async fn generate(
        &self,
        job: &OnChainJob,
        prompt: &PromptFrame,
        sink: &StreamSink,
    ) -> Result<Generated, StreamError> {
        let request = GenerateRequest {
            prompt: prompt.prompt.clone(),
            max_tokens: job.details.max_tokens.min(self.limits.max_tokens),
            temperature: milli(prompt.temperature_milli),
            top_p: milli(prompt.top_p_milli),
            seed: prompt.seed,
            ..GenerateRequest::default()
        };
        self.run_generation(&job.details.model, request, sink).await
    }

    /// Runs `request` on `model` in one of the host's slots (waiting for one), streaming to
    /// `sink`: for a session prompt.
    pub(super) async fn run_generation(
        &self,
        model: &ModelId,
        request: GenerateRequest,
        sink: &StreamSink,
    ) -> Result<Generated, StreamError> {
        self.metrics.jobs_waiting.inc();
        let permit = self.slots.acquire().await;
        self.metrics.jobs_waiting.dec();
        let Ok(_permit) = permit else {
            return Err(StreamError {
                code: StreamErrorCode::Unavailable,
                message: "shutting down".into(),
            });
        };
        self.stream_generation(model, request, sink).await
    }

    /// Generates and streams `request` on `model` until the end or until the client goes,
    /// counted as a running job.
    async fn stream_generation(
        &self,
        model: &ModelId,
        request: GenerateRequest,
        sink: &StreamSink,
    ) -> Result<Generated, StreamError> {
        let model = self.models.get(model).ok_or_else(|| StreamError {
            code: StreamErrorCode::UnknownJob,
            message: "model not served".into(),
        })?;
        self.metrics.jobs_running.inc();
        let started = Instant::now();
        let generated = self.stream_tokens(model, request, sink).await;
        self.metrics.jobs_running.dec();
        self.metrics
            .streaming_seconds
            .inc_by(started.elapsed().as_secs_f64());
        generated
    }

    async fn stream_tokens(
        &self,
        model: &super::ServedModel,
        request: GenerateRequest,
        sink: &StreamSink,
    ) -> Result<Generated, StreamError> {
        let failed = |e: fabstir_inference::Error| StreamError {
            code: StreamErrorCode::InferenceFailed,
            message: super::internal("inference failed", &e),
        };
        let mut tokens = model.backend.generate(request).await.map_err(failed)?;
        let mut generated = Generated {
            text: String::new(),
            tokens: 0,
            cancelled: false,
        };
        while let Some(token) = tokens.next_token().await {
            let token = token.map_err(failed)?;
            generated.text.push_str(&token.text);
            generated.tokens += 1;
            let frame = StreamToken {
                id: token.id,
                text: token.text,
            };
            if sink.send(frame).await.is_err() {
                tokens.cancel();
                generated.cancelled = true;
                break;
            }
        }
        Ok(generated)
    }
}

pub(super) fn milli(value: u32) -> f32 {
    // Sampling parameters travel as thousandths; 1000 is 1.0.
    (f64::from(value) / 1000.0) as f32
}
