//! `fabstir`: the command-line client of the Fabstir LLM marketplace. Each command is a module
//! under `commands/`; the options they share and the one configuration loader are in
//! `settings.rs`. This file parses the command line and dispatches.

#[macro_use]
mod output;
mod commands;
mod settings;

use std::io::IsTerminal;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use commands::{ask, balance, chat, demo, devnet, faucet, gateway, job, nodes, sessions, withdraw};

/// The Fabstir LLM marketplace from the command line.
#[derive(Debug, Parser)]
#[command(name = "fabstir", version, about)]
struct Cli {
    #[command(flatten)]
    global: settings::Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local chain, deploy the contracts, fund test accounts and start host nodes.
    Devnet(devnet::Args),
    /// Ask a model: tokens stream to stdout, progress to stderr.
    Ask(ask::Args),
    /// Chat with a model on one session: one deposit, no transaction per prompt.
    Chat(chat::Args),
    /// List your sessions that hold a deposit, or close one (`sessions close ID`).
    Sessions(sessions::Args),
    /// List verified hosts serving a model.
    Nodes(nodes::Args),
    /// Show a job's state and settlement from the chain.
    Job(job::Args),
    /// Show balances of an address (the signer's by default).
    Balance(balance::Args),
    /// Mint test tokens on a local chain.
    Faucet(faucet::Args),
    /// Withdraw the key's credit in the marketplace (a host's earnings) to its address.
    Withdraw(withdraw::Args),
    /// Serve an OpenAI-compatible API on HTTP, paying marketplace hosts from the key's wallet.
    Gateway(gateway::Args),
    /// The whole marketplace end to end on a local devnet: one USDC and one ETH job, then a
    /// chat of three prompts on one session.
    Demo(demo::Args),
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let Cli { global, command } = Cli::parse();
    match command {
        Command::Devnet(args) => devnet::run(args).await,
        Command::Ask(args) => ask::run(&global, args).await,
        Command::Chat(args) => chat::run(&global, args).await,
        Command::Nodes(args) => nodes::run(&global, args).await,
        Command::Sessions(args) => sessions::run(&global, args).await,
        Command::Job(args) => job::run(&global, args).await,
        Command::Balance(args) => balance::run(&global, args).await,
        Command::Faucet(args) => faucet::run(&global, args).await,
        Command::Withdraw(args) => withdraw::run(&global, args).await,
        Command::Gateway(args) => gateway::run(&global, args).await,
        Command::Demo(args) => demo::run(args).await,
    }
}
