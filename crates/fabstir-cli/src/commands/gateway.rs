//! `fabstir gateway`: an OpenAI-compatible HTTP endpoint paying marketplace hosts from the
//! key's wallet, until interrupted.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use fabstir_gateway::{Gateway, GatewayConfig};
use tokio_util::sync::CancellationToken;

use crate::settings::Global;

/// The environment variable holding the gateway's bearer token, if it wants one.
const API_KEY_ENV: &str = "FABSTIR_GATEWAY_API_KEY";

/// Arguments of `fabstir gateway`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (port 0 picks a free one; the bound address goes to stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Payment token: USDC, ETH, DAI, USDT or an address.
    #[arg(long, default_value = "USDC")]
    pay: String,
    /// Highest price per token, in the token's units (e.g. 0.00001).
    #[arg(long)]
    max_price: Option<String>,
    /// Most one request may escrow, in the token's units.
    #[arg(long)]
    max_per_request: Option<String>,
    /// Most spent in one UTC day, in the token's units.
    #[arg(long)]
    max_per_day: Option<String>,
    /// A model `GET /v1/models` lists when hosts serve it (repeatable). Requests may name
    /// any model.
    #[arg(long = "model")]
    models: Vec<String>,
    /// `max_tokens` of a request that names none.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
}

/// Serves until ctrl-c, then lets running requests finish.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(true).await?;
    let token = sdk.token(&args.pay)?;
    let amount = |text: &Option<String>, what: &str| -> Result<_> {
        text.as_deref()
            .map(|t| {
                token
                    .parse_amount(t)
                    .with_context(|| format!("--{what} {t}"))
            })
            .transpose()
    };
    let config = GatewayConfig {
        token: args.pay.clone(),
        max_price: amount(&args.max_price, "max-price")?,
        max_per_request: amount(&args.max_per_request, "max-per-request")?,
        max_per_day: amount(&args.max_per_day, "max-per-day")?,
        default_max_tokens: args.max_tokens,
        models: args.models,
        api_key: std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()),
    };
    let guarded = config.api_key.is_some();
    let gateway = Gateway::new(sdk, config)?;
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr()?;
    eprintln!(
        "gateway on http://{bound}/v1 paying in {}{}",
        token.symbol,
        if guarded {
            " (bearer token required)"
        } else {
            ""
        }
    );
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop.cancel();
        }
    });
    gateway.serve(listener, shutdown).await?;
    eprintln!(
        "gateway stopped; spent today {}",
        token.format_amount(gateway.spent_today())
    );
    Ok(())
}
