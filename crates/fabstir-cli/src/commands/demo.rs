//! `fabstir demo`: the whole marketplace end to end on a local devnet, one USDC job and one
//! ETH job, with what each paid, then a short chat (three prompts on one session) and what
//! the session cost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_core::primitives::Address;
use fabstir_core::{ModelId, ProviderQuery};
use fabstir_sdk::{FabstirSdk, JobRequest, SessionRequest};

use super::ask::ask;
use super::chat::{close, closed_line, spent_line};
use super::devnet::workspace_root;

/// Arguments of `fabstir demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Number of host nodes.
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// The prompt.
    #[arg(long, default_value = "")]
    prompt: Option<String>,
    /// Most tokens per job.
    #[arg(long, default_value_t = 200)]
    max_tokens: u32,
}

/// Starts a devnet, runs the two jobs with progress on stderr, and stops everything.
pub(crate) async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let hosts = args.hosts;
    let mut config = DevnetConfig::new(&workspace_root());
    config.hosts = hosts;
    let model = config.model.name.clone();
    let prompt = args.prompt.filter(|p| !p.is_empty()).unwrap_or_else(|| {
        if config.model.tokenizer.is_some() {
            "ROMEO:".into()
        } else {
            String::new()
        }
    });
    eprintln!("starting a local devnet: anvil, contracts, {hosts} hosts serving {model}...");
    let devnet = Devnet::start(config).await?;
    eprintln!(
        "  chain {} at {}",
        devnet.deployment.chain_id,
        devnet.anvil.endpoint()
    );
    for (i, addr) in devnet.bootstrap.iter().enumerate() {
        eprintln!("  host {i}: {addr}");
    }
    let sdk = devnet.client_sdk().await?;
    let client = sdk.signer_address().context("signer")?;
    let nodes = sdk
        .discover(&ProviderQuery::new(
            ModelId::from_name(&model),
            sdk.token("USDC")?.address(),
        ))
        .await?;
    eprintln!("discovered {} verified hosts for {model}", nodes.len());
    for (seed, (symbol, label)) in [("USDC", "USDC (ERC-20)"), ("ETH", "ETH (native)")]
        .into_iter()
        .enumerate()
    {
        let before = sdk.balance(client, symbol).await?;
        eprintln!("\n=== job paid in {label}; prompt {prompt:?} ===");
        let mut request = JobRequest::new(&model, prompt.clone())
            .pay_with(symbol)
            .max_tokens(args.max_tokens);
        // Sampled rather than greedy: small greedy models loop.
        request.temperature_milli = 800;
        request.seed = 42 + seed as u64;
        // The model continues the prompt: show it first.
        out!("{prompt}");
        let result = ask(&sdk, request, true).await?;
        let token = &result.token;
        eprintln!("job {} settled on chain:", result.job);
        eprintln!("  result CID    {} (matches the streamed text)", result.cid);
        eprintln!(
            "  tokens        {} receipted = {} paid",
            result.tokens_receipted, result.tokens_used
        );
        let earned = sdk.credit(result.host_address, symbol).await?;
        eprintln!(
            "  paid to host  {} ({:#x}; its credit in the marketplace is now {}, \
             `fabstir withdraw` takes it out)",
            token.format_amount(result.paid),
            result.host_address,
            token.format_amount(earned)
        );
        eprintln!("  protocol fee  {}", token.format_amount(result.fee));
        eprintln!("  refunded      {}", token.format_amount(result.refund));
        let after = sdk.balance(client, symbol).await?;
        let spent = before.checked_sub(after).unwrap_or_default();
        eprintln!(
            "  client spent  {}{}",
            token.format_amount(spent),
            if token.is_native() { " (with gas)" } else { "" }
        );
    }
    chat(&sdk, &model, client).await?;
    drop(sdk);
    devnet.stop().await?;
    eprintln!(
        "\ndemo finished in {:.1?}; everything it started is stopped",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}

/// Three prompts on one USDC session: one deposit, no transaction per prompt, the cost after
/// each answer, and what the session cost in all once closed.
async fn chat(sdk: &FabstirSdk, model: &str, client: Address) -> Result<()> {
    let token = sdk.token("USDC")?;
    let before = sdk.balance(client, "USDC").await?;
    eprintln!("\n=== a chat of three prompts on one session, paid in USDC ===");
    let deposit = token.parse_amount("0.05")?;
    let mut session = sdk
        .open_session(SessionRequest::new(model, deposit).max_tokens(48))
        .await?;
    eprintln!(
        "session {} with {}: {} deposited once, {} per token",
        session.id(),
        session.host(),
        token.format_amount(session.deposit()),
        token.format_amount(session.price_per_token())
    );
    for line in [
        "Good morrow, friend.",
        "What news from Verona?",
        "Farewell.",
    ] {
        eprintln!("you> {line}");
        let reply = session.chat_with(line, |piece| out!("{piece}")).await?;
        outln!();
        eprintln!("{}", spent_line(&token, &reply));
    }
    let closed = close(session).await?;
    eprintln!("{}", closed_line(&token, &closed));
    let after = sdk.balance(client, "USDC").await?;
    eprintln!(
        "  client spent  {} for the whole chat (three prompts, no transaction between the open and the close)",
        token.format_amount(before.checked_sub(after).unwrap_or_default())
    );
    Ok(())
}
