//! `fabstir withdraw`: a host takes its earnings (or a client an undelivered refund) out of
//! the marketplace, where settlements credit them.

use anyhow::Result;

use crate::settings::Global;

/// Arguments of `fabstir withdraw`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Token symbol or address.
    #[arg(long, default_value = "USDC")]
    token: String,
}

/// Withdraws the key's whole credit in the token to its own address and prints the amount.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(true).await?;
    let token = sdk.token(&args.token)?;
    let amount = sdk.withdraw_credit(&args.token).await?;
    if global.json {
        outln!(
            "{}",
            serde_json::json!({ "token": token.symbol, "withdrawn": amount.format(token.decimals) })
        );
    } else if amount.is_zero() {
        outln!("nothing to withdraw in {}", token.symbol);
    } else {
        outln!("withdrew {}", token.format_amount(amount));
    }
    Ok(())
}
