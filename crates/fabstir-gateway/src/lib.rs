//! `fabstir-gateway`: an OpenAI-compatible HTTP endpoint in front of the Fabstir marketplace,
//! so that any OpenAI client (the `openai` packages, LangChain, editors, chat UIs) gets its
//! tokens from marketplace hosts, paid from the gateway's wallet through the SDK.
//!
//! - `GET /v1/models`: the configured models that hosts serve now, with hosts and prices.
//! - `POST /v1/chat/completions` and `POST /v1/completions`, streamed (server-sent events in
//!   OpenAI's chunk format, ending with `data: [DONE]`) or whole. The `model` field routes
//!   the job; `max_tokens`, `temperature`, `top_p`, `seed` and
//!   `stream_options.include_usage` are honoured; `usage` counts the receipted tokens the
//!   chain paid for; the `fabstir` field (and `x-fabstir-*` headers on whole answers) carry
//!   the job, host, result CID and what was paid.
//! - Errors in OpenAI's format ([`ApiError`]): unknown model 404, no host at acceptable terms
//!   503, over the per-request cap or unable to pay 402, daily cap used up 429, bad request
//!   400, wrong bearer token 401. Caps are enforced before any transaction.
//! - `GET /metrics` (Prometheus) and one log line per request (model, host, tokens, paid,
//!   time to first token).
//!
//! Code map: `routes.rs` the HTTP side, `job.rs` one request through the SDK, `budget.rs`
//! the caps, `api.rs` OpenAI's bodies, `error.rs` its errors, `metrics.rs` the metrics.

mod api;
mod budget;
mod config;
mod error;
mod job;
mod metrics;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt as _;
use fabstir_core::PaymentToken;
use fabstir_sdk::FabstirSdk;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use api::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, Params, Prompt, Settlement,
    StreamOptions, Usage, chat_prompt,
};
pub use config::GatewayConfig;
pub use error::ApiError;
pub use metrics::Metrics;

use budget::Budget;

/// Why a gateway could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configured payment token is not one the marketplace accepts.
    #[error("payment token `{token}`: {source}")]
    Token {
        /// The token as configured.
        token: String,
        /// Why the SDK refused it.
        source: Box<fabstir_sdk::Error>,
    },
}

/// The gateway: an SDK with a signer, what it may spend, and its metrics.
#[derive(Debug)]
pub struct Gateway {
    sdk: FabstirSdk,
    config: GatewayConfig,
    token: PaymentToken,
    budget: Arc<Budget>,
    metrics: Metrics,
}

impl Gateway {
    /// A gateway paying through `sdk` (which needs a signer to serve completions).
    pub fn new(sdk: FabstirSdk, config: GatewayConfig) -> Result<Arc<Self>, SetupError> {
        let token = sdk.token(&config.token).map_err(|e| SetupError::Token {
            token: config.token.clone(),
            source: Box::new(e),
        })?;
        Ok(Arc::new(Self {
            budget: Arc::new(Budget::new(config.max_per_request, config.max_per_day)),
            sdk,
            token,
            config,
            metrics: Metrics::default(),
        }))
    }

    /// The payment token.
    pub fn token(&self) -> &PaymentToken {
        &self.token
    }

    /// Spent today (UTC) by finished requests: paid to hosts plus fees, in base units.
    pub fn spent_today(&self) -> fabstir_core::TokenAmount {
        self.budget.spent_today()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The routes, for serving on a listener of the caller's or testing in process.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        routes::router(self.clone())
    }

    /// Serves on `listener` until `shutdown`; requests running then are finished first.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        // Tokens are small writes that must leave at once, not wait for Nagle's algorithm.
        let listener = listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    /// Binds `addr` and serves in the background until `shutdown`; returns the bound address.
    pub async fn spawn(
        self: &Arc<Self>,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let gateway = self.clone();
        tokio::spawn(async move {
            if let Err(e) = gateway.serve(listener, shutdown).await {
                tracing::error!(error = %e, "gateway server");
            }
        });
        Ok(bound)
    }
}
