//! `fabstir balance`: an address's balance in every token of the deployment, and what the
//! marketplace owes it (a host's earnings, which `fabstir withdraw` takes out).

use anyhow::{Context, Result};
use ethers::types::Address;

use crate::settings::Global;

/// Arguments of `fabstir balance`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address; the key's address when omitted.
    #[arg(long)]
    address: Option<Address>,
}

/// Shows the balances, one a line (or one JSON object by symbol).
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(args.address.is_none()).await?;
    let owner = match args.address {
        Some(a) => a,
        None => sdk.signer_address().context("no key")?,
    };
    let mut out = serde_json::Map::new();
    for symbol in ["ETH", "USDC", "USDT", "DAI", "FAB"] {
        let Ok(token) = sdk.token(symbol) else {
            continue;
        };
        let amount = sdk.balance(owner, symbol).await?;
        let credit = sdk.credit(owner, symbol).await?;
        if global.json {
            out.insert(symbol.into(), amount.format(token.decimals).into());
            if !credit.is_zero() {
                out.insert(
                    format!("{symbol}_credit"),
                    credit.format(token.decimals).into(),
                );
            }
        } else if credit.is_zero() {
            outln!("{:>20}", token.format_amount(amount));
        } else {
            outln!(
                "{:>20}   (+{} credited in the marketplace)",
                token.format_amount(amount),
                token.format_amount(credit)
            );
        }
    }
    if global.json {
        outln!("{}", serde_json::Value::Object(out));
    }
    Ok(())
}
