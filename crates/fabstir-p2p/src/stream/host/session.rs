//! A prompt on an open session (`/fabstir/session/1.0.0`), after the shared challenge: the
//! service grants the stream (the session is open with this host, the proof is its client's,
//! no other prompt of it is streaming), the host says where the transcript resumes and how
//! much the deposit still pays for, then reads one prompt, which streams as a job's tokens do
//! within the window and the deposit, or the client's request to end the session.

use std::sync::Arc;

use fabstir_core::SessionId;
use fabstir_core::receipt::Transcript;
use fabstir_core::wire::{ClientFrame, HostFrame, SessionReady, StreamErrorCode, StreamToken};
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::slots::Slot;
use super::tokens::{Finished, Served, stream_tokens};
use super::{HostContext, next_client_frame, over_cap, protocol, refuse, refused, stream_error};
use crate::frame::{self, write_frame};
use crate::service::{ClientProof, StreamSink};
use crate::stream::credit::Credit;
use crate::{Error, Result};

/// Serves one session stream once the challenge was answered with `proof` for `session`.
pub(super) async fn serve_session(
    peer: PeerId,
    mut stream: libp2p::Stream,
    ctx: &HostContext,
    session: SessionId,
    proof: ClientProof,
    handshake: Slot,
) -> Result<()> {
    let grant = match ctx.host.authorize_session(session, &proof).await {
        Ok(grant) => grant,
        Err(refusal) => return refused(&mut stream, peer, refusal).await,
    };
    // From here on the stream ends through `session_stream_ended`, whatever happens.
    let resume = grant.resume.clone();
    let _serving = match ctx.stream_slot(peer) {
        Ok(serving) => serving,
        Err(full) => {
            ctx.host.session_stream_ended(session, resume).await;
            return refuse(&mut stream, over_cap(full), Error::Cancelled).await;
        }
    };
    drop(handshake);
    let ready = HostFrame::SessionReady(SessionReady {
        resume: resume.clone(),
        available_tokens: grant.available_tokens,
    });
    if let Err(e) = write_frame(&mut stream, &ready).await {
        ctx.host.session_stream_ended(session, resume).await;
        return Err(e);
    }
    let timeout = ctx.config.handshake_timeout;
    let prompt = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::SessionPrompt(prompt))) if !prompt.input.is_empty() => prompt,
        Ok(Some(ClientFrame::EndSession)) => {
            let answer = match ctx.host.end_session(session).await {
                Ok(ending) => HostFrame::SessionEnding(ending),
                Err(refusal) => HostFrame::Error(refusal),
            };
            ctx.host.session_stream_ended(session, resume).await;
            write_frame(&mut stream, &answer).await?;
            return frame::close(&mut stream).await;
        }
        Ok(None | Some(ClientFrame::Cancel)) => {
            ctx.host.session_stream_ended(session, resume).await;
            return Ok(());
        }
        Ok(Some(_)) => {
            ctx.host.session_stream_ended(session, resume).await;
            let frame = stream_error(StreamErrorCode::Malformed, "expected a session prompt");
            let error = protocol(peer, "expected a session prompt".into());
            return refuse(&mut stream, frame, error).await;
        }
        Err(e) => {
            ctx.host.session_stream_ended(session, resume).await;
            let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
            return refuse(&mut stream, frame, e).await;
        }
    };
    let mut transcript = match &resume {
        Some(receipt) => Transcript::resume(receipt.transcript, receipt.tokens),
        None => Transcript::session(session),
    };
    transcript.push_prompt(prompt.input.hash());
    let limit = transcript.counted().saturating_add(grant.available_tokens);
    let credit = Credit::new(
        session,
        grant.client,
        transcript,
        ctx.receipt_domain(),
        ctx.config.credit_window,
    )
    .resumed_from(resume)
    .limited_to(limit);
    let (tx, rx) = mpsc::channel::<StreamToken>(ctx.config.token_buffer.max(1));
    let host = Arc::clone(&ctx.host);
    let budget = grant.available_tokens;
    let producer = tokio::spawn(async move {
        host.run_session(session, prompt, budget, StreamSink::new(tx))
            .await
            .map(Finished::Session)
    });
    stream_tokens(
        peer,
        stream,
        ctx,
        Served::Session(session),
        credit,
        producer,
        rx,
    )
    .await
}
