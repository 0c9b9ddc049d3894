//! The client's side of `/fabstir/session/1.0.0`: after the shared challenge, the host says
//! where the session resumes (the newest receipt it holds, which must carry this client's own
//! signature) and the client sends one prompt, then reads a [`SessionStream`] of
//! [`SessionEvent`]s, receipting cumulatively over the whole session; or it asks the host to
//! end the session.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fabstir_core::receipt::{ReceiptDomain, Transcript};
use fabstir_core::wire::{ClientFrame, HostFrame, SessionEnding, SessionPrompt, SessionReady};
use fabstir_core::{SessionEvent, SessionId};
use futures::Stream;
use libp2p::PeerId;

use super::{
    ClientContext, Ending, Event, Events, Reader, Receipts, authenticate, handshake_frame,
};
use crate::frame::{self, write_frame};
use crate::signer::ClientSigner;
use crate::{Error, Result};

/// The client's side of one session prompt: a [`Stream`] of [`SessionEvent`]s ending after
/// [`SessionEvent::Done`] or an error, and where the session resumed. Dropping it cancels the
/// prompt.
#[derive(Debug)]
pub struct SessionStream {
    ready: SessionReady,
    events: Events<SessionEvent>,
}

impl SessionStream {
    /// Where the session resumed (the host's newest receipt) and what the deposit still pays
    /// for beyond it, as the host said before the prompt.
    pub fn ready(&self) -> &SessionReady {
        &self.ready
    }

    /// Asks the host to stop generating, then ends the stream.
    pub async fn cancel(self) -> Result<()> {
        self.events.cancel().await
    }
}

impl Stream for SessionStream {
    type Item = Result<SessionEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

/// Reads the host's [`SessionReady`] and checks its resume point: a receipt this client
/// signed for this session (a host cannot resume from a point the client never reached).
async fn ready(
    ctx: &ClientContext<'_>,
    stream: &mut libp2p::Stream,
    peer: PeerId,
    session: SessionId,
    signer: &dyn ClientSigner,
) -> Result<SessionReady> {
    let ready = handshake_frame(
        stream,
        ctx.config.stream.handshake_timeout,
        &peer,
        (
            "expected session ready",
            "stream closed before session ready",
        ),
        |frame| match frame {
            HostFrame::SessionReady(ready) => Some(ready),
            _ => None,
        },
    )
    .await?;
    if let Some(resume) = &ready.resume {
        let domain = ReceiptDomain {
            chain_id: ctx.config.chain_id,
            marketplace: ctx.config.marketplace,
        };
        let signer_of = resume.receipt(session).signer(&domain, &resume.signature);
        if signer_of.ok() != Some(signer.address()) {
            return Err(Error::Unverified {
                peer: peer.to_string(),
                reason: "the session resumes from a receipt this client did not sign".into(),
            });
        }
    }
    Ok(ready)
}

/// Runs a session stream's handshake for `session` on a fresh `stream` and sends `prompt`.
pub(crate) async fn open_session(
    ctx: ClientContext<'_>,
    mut stream: libp2p::Stream,
    peer: PeerId,
    session: SessionId,
    signer: Arc<dyn ClientSigner>,
    prompt: SessionPrompt,
) -> Result<SessionStream> {
    let (challenge, lease) =
        authenticate(&ctx, &mut stream, peer, session, signer.as_ref()).await?;
    let ready = ready(&ctx, &mut stream, peer, session, signer.as_ref()).await?;
    let mut transcript = match &ready.resume {
        Some(receipt) => Transcript::resume(receipt.transcript, receipt.tokens),
        None => Transcript::session(session),
    };
    transcript.push_prompt(prompt.input.hash());
    let receipts = Receipts::new(signer, ctx.config, transcript, challenge.credit_window);
    let max_tokens = u64::from(prompt.max_tokens);
    write_frame(&mut stream, &ClientFrame::SessionPrompt(prompt)).await?;
    let (reader, cancel) = Reader::new(
        &ctx,
        stream,
        (peer, challenge.host, session),
        Ending::Session,
        receipts,
        lease,
    );
    let reader = reader.with_max_tokens(max_tokens);
    let map = |event| match event {
        Event::Tokens(batch) => Ok(SessionEvent::Tokens(batch)),
        Event::Prompt(end) => Ok(SessionEvent::Done(end)),
        // A session's reader accepts no job result.
        Event::Job(_) => Err(Error::Truncated("a job frame on a session stream".into())),
    };
    Ok(SessionStream {
        ready,
        events: reader.into_events(map, cancel),
    })
}

/// Asks the host of `session` to end it: after the handshake, `EndSession`; the host closes
/// the session on chain with the newest receipt it holds and says what that pays for.
pub(crate) async fn end_session(
    ctx: ClientContext<'_>,
    mut stream: libp2p::Stream,
    peer: PeerId,
    session: SessionId,
    signer: Arc<dyn ClientSigner>,
) -> Result<SessionEnding> {
    let (_, _lease) = authenticate(&ctx, &mut stream, peer, session, signer.as_ref()).await?;
    ready(&ctx, &mut stream, peer, session, signer.as_ref()).await?;
    write_frame(&mut stream, &ClientFrame::EndSession).await?;
    let ending = handshake_frame(
        &mut stream,
        ctx.config.stream.handshake_timeout,
        &peer,
        (
            "expected session ending",
            "stream closed before session ending",
        ),
        |frame| match frame {
            HostFrame::SessionEnding(ending) => Some(ending),
            _ => None,
        },
    )
    .await?;
    let _ = frame::close(&mut stream).await;
    Ok(ending)
}
