//! `fabstir job`: a job's state and settlement, from the chain.

use anyhow::Result;
use fabstir_core::JobId;

use crate::settings::Global;

/// Arguments of `fabstir job`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The job id.
    id: u64,
}

/// Shows the job.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(false).await?;
    let status = sdk.job_status(JobId(args.id)).await?;
    if global.json {
        outln!(
            "{}",
            serde_json::json!({
                "job": status.job.0,
                "state": status.state.to_string(),
                "client": status.client,
                "host": status.host,
                "token": status.token,
                "amount": status.amount,
                "result_cid": status.result_cid.map(|cid| cid.to_string()),
            })
        );
        return Ok(());
    }
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
    Ok(())
}
