//! `fabstir nodes`: the verified hosts serving a model.

use anyhow::Result;
use fabstir_core::{ModelId, ProviderQuery};

use crate::settings::Global;

/// Arguments of `fabstir nodes`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The model's name.
    #[arg(long)]
    model: String,
    /// Payment token the hosts must accept.
    #[arg(long, default_value = "USDC")]
    pay: String,
}

/// Lists the hosts, one a line (or one JSON array).
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(false).await?;
    let token = sdk.token(&args.pay)?;
    let nodes = sdk
        .discover(&ProviderQuery::new(
            ModelId::from_name(&args.model),
            token.address(),
        ))
        .await?;
    if global.json {
        outln!("{}", serde_json::to_string(&nodes)?);
        return Ok(());
    }
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
    Ok(())
}
