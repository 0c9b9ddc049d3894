//! [`Throttled`]: a backend that paces another one, for simulating slower hardware in tests,
//! demos and benchmarks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{FinishReason, GenerateRequest, InferenceBackend, ModelInfo, Result, TokenStream};

/// Delivers the tokens of an inner backend no faster than one per `delay`.
#[derive(Clone)]
pub struct Throttled {
    inner: Arc<dyn InferenceBackend>,
    delay: Duration,
}

impl std::fmt::Debug for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttled")
            .field("model", &self.inner.model().name)
            .field("delay", &self.delay)
            .finish()
    }
}

impl Throttled {
    /// Paces `inner` to one token per `delay`.
    pub fn new(inner: Arc<dyn InferenceBackend>, delay: Duration) -> Self {
        Self { inner, delay }
    }
}

#[async_trait]
impl InferenceBackend for Throttled {
    fn model(&self) -> &ModelInfo {
        self.inner.model()
    }

    async fn generate(&self, request: GenerateRequest) -> Result<TokenStream> {
        let cancel = request.cancel.clone();
        let mut upstream = self.inner.generate(request).await?;
        let (sink, stream) = TokenStream::channel(1, upstream.usage().prompt_tokens, &cancel);
        let delay = self.delay;
        tokio::spawn(async move {
            while let Some(token) = upstream.next_token().await {
                match token {
                    Ok(token) => {
                        tokio::time::sleep(delay).await;
                        if sink.send(token).await.is_err() {
                            upstream.cancel();
                            return;
                        }
                    }
                    Err(e) => {
                        sink.fail(e).await;
                        return;
                    }
                }
            }
            let reason = upstream.finish_reason().unwrap_or(FinishReason::Stop);
            sink.finish(reason, Some(upstream.usage())).await;
        });
        Ok(stream)
    }
}
