//! `fabstir`: the command-line client of the Fabstir LLM marketplace.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ethers::signers::{LocalWallet, Signer as _};
use ethers::types::Address;
use fabstir_cli::devnet::{Devnet, DevnetConfig, accounts};
use fabstir_core::{Deployment, JobId, JobState, ModelId, ProviderQuery};
use fabstir_sdk::{FabstirSdk, JobRequest, JobResult};
use fabstir_sdk::{SdkConfig, SdkEvent};
use tracing_subscriber::EnvFilter;

/// Writes a line to stdout. A closed stdout (`fabstir nodes | head`) is not an error: the
/// rest of the output is dropped and the command still finishes (and stops what it started).
macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// [`outln!`] without the newline, flushed at once (streamed tokens).
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    // Errors (a closed pipe above all) are ignored on purpose: see `outln!`.
    let _ = stdout.write_fmt(args).and_then(|()| stdout.flush());
}

/// The Fabstir LLM marketplace from the command line.
#[derive(Debug, Parser)]
#[command(name = "fabstir", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// SDK configuration (TOML); `fabstir devnet` writes one.
    #[arg(long, global = true, env = "FABSTIR_CONFIG")]
    config: Option<PathBuf>,
    /// Deployment file (JSON); defaults to `deployment.json` beside the configuration.
    #[arg(long, global = true, env = "FABSTIR_DEPLOYMENT")]
    deployment: Option<PathBuf>,
    /// File holding the client's private key (hex). `FABSTIR_KEY` in the environment takes
    /// precedence. Keys are never accepted on the command line.
    #[arg(long, global = true)]
    key_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local chain, deploy the contracts, fund test accounts and start host nodes.
    Devnet {
        /// Number of host nodes.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Where to write the deployment, configuration and host storage.
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
    },
    /// Ask a model: tokens stream to stdout, progress to stderr.
    Ask {
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
    },
    /// List verified hosts serving a model.
    Nodes {
        /// The model's name.
        #[arg(long)]
        model: String,
        /// Payment token the hosts must accept.
        #[arg(long, default_value = "USDC")]
        pay: String,
    },
    /// Show a job's state and settlement from the chain.
    Job {
        /// The job id.
        id: u64,
    },
    /// Show balances of an address (the signer's by default).
    Balance {
        /// The address; the key's address when omitted.
        #[arg(long)]
        address: Option<Address>,
    },
    /// Mint test tokens on a local chain.
    Faucet {
        /// Token symbol.
        #[arg(long, default_value = "USDC")]
        token: String,
        /// Amount in the token's units.
        #[arg(long, default_value = "100")]
        amount: String,
        /// Recipient; the key's address when omitted.
        #[arg(long)]
        to: Option<Address>,
    },
    /// The whole marketplace end to end on a local devnet: one USDC and one ETH job.
    Demo {
        /// Number of host nodes.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// The prompt.
        #[arg(long, default_value = "")]
        prompt: Option<String>,
        /// Most tokens per job.
        #[arg(long, default_value_t = 200)]
        max_tokens: u32,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match &cli.command {
        Command::Devnet { hosts, dir } => devnet(*hosts, dir).await,
        Command::Demo {
            hosts,
            prompt,
            max_tokens,
        } => demo(*hosts, prompt.clone(), *max_tokens).await,
        Command::Ask {
            prompt,
            model,
            pay,
            max_price,
            max_tokens,
            temperature,
            seed,
        } => {
            let sdk = connect(&cli, true).await?;
            let token = sdk.token(pay)?;
            let mut request = JobRequest::new(model, prompt.as_str())
                .pay_with(pay)
                .max_tokens(*max_tokens);
            if let Some(price) = max_price {
                request.max_price = Some(token.parse_amount(price)?);
            }
            // Thousandths, parsed exactly: "0.8" is 800.
            request.temperature_milli = fabstir_core::TokenAmount::parse(temperature, 3)?
                .base_units()
                .try_into()
                .map_err(|_| anyhow::anyhow!("temperature {temperature} is too large"))?;
            request.seed = *seed;
            let result = ask(&sdk, request, !cli.json).await?;
            report(&cli, &result)
        }
        Command::Nodes { model, pay } => {
            let sdk = connect(&cli, false).await?;
            let token = sdk.token(pay)?;
            let nodes = sdk
                .discover(&ProviderQuery::new(
                    ModelId::from_name(model),
                    token.address(),
                ))
                .await?;
            if cli.json {
                outln!("{}", serde_json::to_string(&nodes)?);
            } else {
                for node in nodes {
                    let caps = &node.capabilities;
                    let price = caps.price_for(token.address()).unwrap_or_default();
                    outln!(
                        "{}  {:#x}  {} per token  latency {:?}  load {}/{}  {}",
                        caps.peer_id,
                        caps.eth_address,
                        token.format_amount(price),
                        node.latency,
                        caps.current_load,
                        caps.max_concurrent,
                        caps.version
                    );
                }
            }
            Ok(())
        }
        Command::Job { id } => {
            let sdk = connect(&cli, false).await?;
            let status = sdk.job_status(JobId(*id)).await?;
            if cli.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "job": status.job.0,
                        "state": status.state.to_string(),
                        "client": status.client,
                        "host": status.host,
                        "token": status.token,
                        "amount": status.amount,
                        "result_cid": status.result_cid,
                    })
                );
            } else {
                outln!("job {}: {}", status.job, status.state);
                outln!("  client  {:#x}", status.client);
                if let Some(host) = status.host {
                    outln!("  host    {host:#x}");
                }
                outln!(
                    "  escrow  {} base units of {:#x}",
                    status.amount.base_units(),
                    status.token
                );
                if let Some(cid) = status.result_cid {
                    outln!("  result  {cid}");
                }
                if let Some(s) = status.settlement {
                    outln!(
                        "  paid {} / fee {} / refund {} (base units)",
                        s.paid.base_units(),
                        s.fee.base_units(),
                        s.refund.base_units()
                    );
                }
            }
            Ok(())
        }
        Command::Balance { address } => {
            let sdk = connect(&cli, address.is_none()).await?;
            let owner = match address {
                Some(a) => *a,
                None => sdk.signer_address().context("no key")?,
            };
            let mut out = serde_json::Map::new();
            for symbol in ["ETH", "USDC", "USDT", "DAI", "FAB"] {
                let Ok(token) = sdk.token(symbol) else {
                    continue;
                };
                let amount = sdk.balance(owner, symbol).await?;
                if cli.json {
                    out.insert(symbol.into(), amount.format(token.decimals).into());
                } else {
                    outln!("{:>20}", token.format_amount(amount));
                }
            }
            if cli.json {
                outln!("{}", serde_json::Value::Object(out));
            }
            Ok(())
        }
        Command::Faucet { token, amount, to } => faucet(&cli, token, amount, *to).await,
    }
}

/// Loads configuration and deployment and connects an SDK; with `signer`, sets the key.
async fn connect(cli: &Cli, signer: bool) -> Result<FabstirSdk> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("devnet/sdk.toml"));
    let mut config = SdkConfig::load(&config_path).with_context(|| {
        format!(
            "loading {} (run `fabstir devnet` first?)",
            config_path.display()
        )
    })?;
    let deployment_path = cli.deployment.clone().unwrap_or_else(|| {
        config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("deployment.json")
    });
    let deployment = Deployment::load(&deployment_path)?;
    config.contracts = deployment.contracts;
    config.chain_id = deployment.chain_id;
    let sdk = FabstirSdk::connect(config, &deployment).await?;
    if signer {
        sdk.set_signer(load_key(cli)?)?;
    }
    Ok(sdk)
}

fn load_key(cli: &Cli) -> Result<LocalWallet> {
    let text = match std::env::var("FABSTIR_KEY") {
        Ok(text) => text,
        Err(_) => {
            let path = cli
                .key_file
                .as_ref()
                .context("set FABSTIR_KEY or pass --key-file")?;
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    text.trim()
        .trim_start_matches("0x")
        .parse::<LocalWallet>()
        .map_err(|_| anyhow::anyhow!("the key is not a valid hex private key"))
}

async fn faucet(cli: &Cli, symbol: &str, amount: &str, to: Option<Address>) -> Result<()> {
    let sdk = connect(cli, true).await?;
    let token = sdk.token(symbol)?;
    if token.is_native() {
        bail!("the faucet mints test tokens; ETH comes with the devnet's accounts");
    }
    let wallet = load_key(cli)?;
    let to = to.unwrap_or(wallet.address());
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("devnet/sdk.toml"));
    let config = SdkConfig::load(&config_path)?;
    let deployment = Deployment::load(
        &cli.deployment
            .clone()
            .unwrap_or_else(|| config_path.with_file_name("deployment.json")),
    )?;
    let contracts = fabstir_contracts::HeadlessContractManager::connect(
        &config.rpc_url,
        &deployment,
        &fabstir_contracts::ManagerConfig::local(),
    )
    .await?;
    let signer = contracts.signer(wallet);
    contracts
        .faucet_mint(token.address(), to, token.parse_amount(amount)?, &signer)
        .await
        .context("minting (local chains only)")?;
    outln!(
        "minted {} to {to:#x}",
        token.format_amount(token.parse_amount(amount)?)
    );
    Ok(())
}

/// Runs a job, printing tokens to stdout as they arrive and progress to stderr (a spinner
/// while the job is negotiated, posted and claimed; hidden when stderr is not a terminal).
async fn ask(sdk: &FabstirSdk, request: JobRequest, progress: bool) -> Result<JobResult> {
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

fn report(cli: &Cli, result: &JobResult) -> Result<()> {
    let token = &result.token;
    if cli.json {
        outln!(
            "{}",
            serde_json::json!({
                "job": result.job.0,
                "text": result.text,
                "host": result.host.to_string(),
                "host_address": result.host_address,
                "cid": result.cid,
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
        eprintln!("  paid to host {}", token.format_amount(result.paid));
        eprintln!("  protocol fee {}", token.format_amount(result.fee));
        eprintln!("  refunded     {}", token.format_amount(result.refund));
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // The binary runs from the workspace in the demo; fall back to the current folder.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .filter(|p| p.join("Cargo.toml").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

async fn devnet(hosts: usize, dir: &Path) -> Result<()> {
    let mut config = DevnetConfig::new(&workspace_root());
    config.hosts = hosts;
    config.dir = Some(dir.to_path_buf());
    let devnet = Devnet::start(config).await?;
    let sdk_path = dir.join("sdk.toml");
    std::fs::write(&sdk_path, devnet.sdk_config.to_toml()?)?;
    let key_path = dir.join("client.key");
    let client = devnet.wallet(accounts::CLIENT)?;
    std::fs::write(&key_path, format!("0x{}\n", hex_key(&client)))?;
    outln!(
        "devnet up: chain {} at {}",
        devnet.deployment.chain_id,
        devnet.anvil.endpoint()
    );
    outln!("  deployment  {}", dir.join("deployment.json").display());
    outln!("  sdk config  {}", sdk_path.display());
    outln!(
        "  client key  {} (a public anvil test key, {:#x})",
        key_path.display(),
        client.address()
    );
    for (i, addr) in devnet.bootstrap.iter().enumerate() {
        outln!("  host {i}      {addr}");
    }
    outln!(
        "try: fabstir --config {} --key-file {} ask \"Once upon a time\" --model {} --pay USDC",
        sdk_path.display(),
        key_path.display(),
        DevnetConfig::new(&workspace_root()).model.name
    );
    outln!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    devnet.stop().await
}

fn hex_key(wallet: &LocalWallet) -> String {
    wallet
        .signer()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn demo(hosts: usize, prompt: Option<String>, max_tokens: u32) -> Result<()> {
    let started = std::time::Instant::now();
    let mut config = DevnetConfig::new(&workspace_root());
    config.hosts = hosts;
    let model = config.model.name.clone();
    let prompt = prompt.filter(|p| !p.is_empty()).unwrap_or_else(|| {
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
            .max_tokens(max_tokens);
        // Sampled rather than greedy: small greedy models loop.
        request.temperature_milli = 800;
        request.seed = 42 + seed as u64;
        // The model continues the prompt: show it first.
        out!("{prompt}");
        let result = ask(&sdk, request, true).await?;
        let token = &result.token;
        eprintln!("job {} settled on chain:", result.job);
        eprintln!("  result CID    {} (matches the streamed text)", result.cid);
        eprintln!("  tokens used   {}", result.tokens_used);
        eprintln!(
            "  paid to host  {} ({:#x})",
            token.format_amount(result.paid),
            result.host_address
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
    drop(sdk);
    devnet.stop().await?;
    eprintln!(
        "\ndemo finished in {:.1?}; everything it started is stopped",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
