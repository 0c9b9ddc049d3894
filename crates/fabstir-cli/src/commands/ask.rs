//! `fabstir ask`: runs a job, tokens to stdout as they arrive and progress to stderr.

use std::time::Duration;

use anyhow::Result;
use fabstir_core::{JobState, TokenAmount};
use fabstir_sdk::{FabstirSdk, JobRequest, JobResult, SdkEvent};

use crate::settings::Global;

/// Arguments of `fabstir ask`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The prompt.
    prompt: String,
    /// The model's name.
    #[arg(long)]
    model: String,
    /// Payment token: USDC, ETH, DAI, USDT or an address.
    #[arg(long, default_value = "USDC")]
    pay: String,
    /// Highest price per token, in the token's units (e.g. 0.00001).
    #[arg(long)]
    max_price: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling temperature (0 is greedy).
    #[arg(long, default_value = "0.8")]
    temperature: String,
    /// Sampling seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Asks the model and reports the settlement.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(true).await?;
    let token = sdk.token(&args.pay)?;
    let mut request = JobRequest::new(&args.model, args.prompt.as_str())
        .pay_with(&args.pay)
        .max_tokens(args.max_tokens);
    if let Some(price) = &args.max_price {
        request.max_price = Some(token.parse_amount(price)?);
    }
    // Thousandths, parsed exactly: "0.8" is 800.
    let temperature = &args.temperature;
    request.temperature_milli = TokenAmount::parse(temperature, 3)?
        .base_units()
        .try_into()
        .map_err(|_| anyhow::anyhow!("temperature {temperature} is too large"))?;
    request.seed = args.seed;
    let result = ask(&sdk, request, !global.json).await?;
    report(global.json, &result);
    Ok(())
}

/// Runs a job, printing tokens to stdout as they arrive and progress to stderr (a spinner
/// while the job is negotiated, posted and claimed; hidden when stderr is not a terminal).
pub(crate) async fn ask(
    sdk: &FabstirSdk,
    request: JobRequest,
    progress: bool,
) -> Result<JobResult> {
    // With --json (no progress) the text goes into the JSON document instead of stdout.
    let echo = progress;
    let mut events = sdk.events();
    let mut handle = sdk.submit_job(request).await?;
    let request_id = handle.request_id();
    let spinner = if progress {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message("Negotiating: discovering and ranking hosts");
    let bar = spinner.clone();
    let printer = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                SdkEvent::JobStateChanged {
                    request, job, to, ..
                } if request == request_id => {
                    let job = job.map(|j| format!(" job {j}")).unwrap_or_default();
                    match to {
                        JobState::Streaming => bar.finish_and_clear(),
                        JobState::Posted => bar.set_message(format!(
                            "Posted{job}: escrow paid, waiting for the host's claim"
                        )),
                        JobState::Claimed => bar.set_message(format!(
                            "Claimed{job}: authenticating and sending the prompt"
                        )),
                        JobState::Processing => {
                            bar.set_message(format!("Processing{job}: waiting for the first token"))
                        }
                        other => bar.set_message(format!("{other}{job}")),
                    }
                }
                SdkEvent::Failover {
                    host,
                    reason,
                    attempt,
                    ..
                } => {
                    bar.reset();
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar.println(format!(
                        "failing over (attempt {attempt}): host {host}: {reason}"
                    ));
                }
                _ => {}
            }
        }
    });
    while let Some(text) = handle.next_tokens().await {
        if echo {
            out!("{text}");
        }
    }
    if echo {
        outln!();
    }
    let result = handle.result().await;
    printer.abort();
    spinner.finish_and_clear();
    Ok(result?)
}

/// The settlement of a job: JSON on stdout, or text on stderr.
fn report(json: bool, result: &JobResult) {
    let token = &result.token;
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "job": result.job.0,
                "text": result.text,
                "host": result.host.to_string(),
                "host_address": result.host_address,
                "cid": result.cid.to_string(),
                "tokens_used": result.tokens_used,
                "token": token.symbol,
                "paid": result.paid.format(token.decimals),
                "fee": result.fee.format(token.decimals),
                "refund": result.refund.format(token.decimals),
                "attempts": result.attempts,
            })
        );
    } else {
        eprintln!("job {} settled on chain:", result.job);
        eprintln!("  result CID   {}", result.cid);
        eprintln!("  tokens used  {}", result.tokens_used);
        eprintln!(
            "  host         {:#x} ({})",
            result.host_address, result.host
        );
        eprintln!(
            "  paid to host {} (credited in the marketplace)",
            token.format_amount(result.paid)
        );
        eprintln!("  protocol fee {}", token.format_amount(result.fee));
        eprintln!("  refunded     {}", token.format_amount(result.refund));
    }
}
