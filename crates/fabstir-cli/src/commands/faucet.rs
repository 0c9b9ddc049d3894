//! `fabstir faucet`: mints test tokens on a local chain.

use anyhow::{Context, Result, bail};
use ethers::signers::Signer as _;
use ethers::types::Address;
use fabstir_contracts::{HeadlessContractManager, ManagerConfig};

use crate::settings::Global;

/// Arguments of `fabstir faucet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Token symbol.
    #[arg(long, default_value = "USDC")]
    token: String,
    /// Amount in the token's units.
    #[arg(long, default_value = "100")]
    amount: String,
    /// Recipient; the key's address when omitted.
    #[arg(long)]
    to: Option<Address>,
}

/// Mints the amount to the recipient, signed with the client's key.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let settings = global.settings()?;
    let sdk = settings.connect(global, true).await?;
    let token = sdk.token(&args.token)?;
    if token.is_native() {
        bail!("the faucet mints test tokens; ETH comes with the devnet's accounts");
    }
    let wallet = global.key()?;
    let to = args.to.unwrap_or(wallet.address());
    let contracts = HeadlessContractManager::connect(
        &settings.config.rpc_url,
        &settings.deployment,
        &ManagerConfig::local(),
    )
    .await?;
    let signer = contracts.signer(wallet);
    let amount = token.parse_amount(&args.amount)?;
    contracts
        .faucet_mint(token.address(), to, amount, &signer)
        .await
        .context("minting (local chains only)")?;
    outln!("minted {} to {to:#x}", token.format_amount(amount));
    Ok(())
}
