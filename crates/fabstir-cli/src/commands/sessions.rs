//! `fabstir sessions`: the signer's sessions that still hold a deposit; `fabstir sessions close
//! ID` ends one (through its host when it answers, else through the chain).

use anyhow::Result;
use fabstir_core::JobId;

use super::chat::closed_line;
use crate::settings::Global;

/// Arguments of `fabstir sessions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// List finished sessions too.
    #[arg(long)]
    all: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Close one of your sessions: the host is paid what you receipted, the rest comes back.
    Close {
        /// The session's id.
        id: u64,
    },
}

/// Lists or closes.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(true).await?;
    if let Some(Action::Close { id }) = args.action {
        let session = sdk.chain().session(JobId(id)).await?;
        let token = sdk.token(&format!("{:#x}", session.token))?;
        let closed = sdk.close_session(JobId(id)).await?;
        outln!("{}", closed_line(&token, &closed));
        return Ok(());
    }
    let sessions = sdk.sessions().await?;
    let shown: Vec<_> = sessions
        .iter()
        .filter(|s| args.all || s.status.is_open())
        .collect();
    if global.json {
        let rows: Vec<_> = shown
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id.0,
                    "status": s.status.to_string(),
                    "host": format!("{:#x}", s.details.host),
                    "token": format!("{:#x}", s.token),
                    "deposit": s.deposit.base_units().to_string(),
                    "settled_tokens": s.settled_tokens,
                    "expiry": s.details.expiry,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if shown.is_empty() {
        outln!("no sessions");
        return Ok(());
    }
    outln!(
        "id             status   host                                         deposit           settled"
    );
    for s in shown {
        let token = sdk.token(&format!("{:#x}", s.token))?;
        outln!(
            "{:<14} {:<8} {:#x}  {:<17} {}",
            s.id.0,
            s.status.to_string(),
            s.details.host,
            token.format_amount(s.deposit),
            token.format_amount(s.settled_cost())
        );
    }
    Ok(())
}
