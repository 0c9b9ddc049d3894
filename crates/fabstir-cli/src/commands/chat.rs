//! `fabstir chat`: an interactive chat on one session: one deposit, then every line you type
//! is a prompt with no transaction, the answer streams as it arrives and the amount spent is
//! shown after it; `/exit` (or end of input) settles and closes the session.

use anyhow::Result;
use fabstir_core::PaymentToken;
use fabstir_sdk::{PromptReply, Session, SessionClosed, SessionRequest};
use rustyline::error::ReadlineError;

use crate::settings::Global;

/// Arguments of `fabstir chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The model's name.
    #[arg(long)]
    model: String,
    /// Payment token: USDC, ETH, DAI, USDT or an address.
    #[arg(long, default_value = "USDC")]
    pay: String,
    /// What to deposit, in the token's units: what the chat may spend. The rest comes back
    /// when it ends.
    #[arg(long, default_value = "0.05")]
    deposit: String,
    /// Highest price per token, in the token's units (e.g. 0.00001).
    #[arg(long)]
    max_price: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
}

/// Opens the session, chats until `/exit`, then closes it.
pub(crate) async fn run(global: &Global, args: Args) -> Result<()> {
    let sdk = global.connect(true).await?;
    let token = sdk.token(&args.pay)?;
    let mut request = SessionRequest::new(&args.model, token.parse_amount(&args.deposit)?)
        .pay_with(&args.pay)
        .max_tokens(args.max_tokens);
    if let Some(price) = &args.max_price {
        request.max_price = Some(token.parse_amount(price)?);
    }
    eprintln!("opening a session for {}...", args.model);
    let mut session = sdk.open_session(request).await?;
    eprintln!(
        "session {} with {} at {} per token, {} deposited. Type /exit to end it.",
        session.id(),
        session.host(),
        token.format_amount(session.price_per_token()),
        token.format_amount(session.deposit())
    );
    let mut editor = rustyline::DefaultEditor::new()?;
    loop {
        // The editor blocks on the terminal; the network keeps running on other threads.
        let line = tokio::task::block_in_place(|| editor.readline("you> "));
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line == "/exit" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        let reply = session.chat_with(line, |piece| out!("{piece}")).await?;
        outln!();
        eprintln!("{}", spent_line(&token, &reply));
    }
    let closed = close(session).await?;
    eprintln!("{}", closed_line(&token, &closed));
    Ok(())
}

/// Closes `session` and reports it.
pub(crate) async fn close(session: Session) -> Result<SessionClosed> {
    eprintln!("closing session {}...", session.id());
    Ok(session.close().await?)
}

/// What an answer cost and what the chat has spent.
pub(crate) fn spent_line(token: &PaymentToken, reply: &PromptReply) -> String {
    let failover = match reply.failovers {
        0 => String::new(),
        n => format!(
            "; {n} host(s) failed, continued in session {}",
            reply.session
        ),
    };
    format!(
        "[{} tokens, {}; spent {} so far{failover}]",
        reply.counted,
        token.format_amount(reply.cost),
        token.format_amount(reply.spent)
    )
}

/// How the session ended.
pub(crate) fn closed_line(token: &PaymentToken, closed: &SessionClosed) -> String {
    if closed.cooperative {
        format!(
            "session {} closed: {} tokens paid, {} in all; the rest of the deposit is refunded",
            closed.session,
            closed.tokens,
            token.format_amount(closed.cost)
        )
    } else {
        format!(
            "session {}: the host did not answer; the deposit comes back after the close window",
            closed.session
        )
    }
}
