//! The token loop of a host's stream, for a job and for a session prompt alike: tokens go out
//! as the producer makes them, coalesced only when the client reads slower, within the credit
//! window (the client's receipts are checked as they come), then the final frame; whatever
//! ended the stream, the newest receipt goes to the [`HostService`].

use std::time::Duration;

use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    ClientFrame, FinishReason, HostFrame, MAX_FRAME_LEN, PromptDone, StreamDone, StreamError,
    StreamErrorCode, StreamToken, TokenBatch,
};
use fabstir_core::{JobId, SessionId};
use futures::{AsyncReadExt, StreamExt};
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::{HostContext, client_frames, protocol, stream_error};
use crate::frame::{self, write_frame};
use crate::service::HostService;
use crate::stream::credit::Credit;
use crate::{Error, Result};

/// What a stream serves.
#[derive(Debug, Clone, Copy)]
pub(super) enum Served {
    /// A one-shot job.
    Job(JobId),
    /// A prompt of a session.
    Session(SessionId),
}

/// How the producer finished.
pub(super) enum Finished {
    /// A job's signed result.
    Job(StreamDone),
    /// A session prompt's end.
    Session(FinishReason),
}

/// The producer of a stream's tokens.
pub(super) type Producer = tokio::task::JoinHandle<Result<Finished, StreamError>>;

impl HostContext {
    /// Hands the newest receipt to the service once a stream ended.
    pub(super) async fn finish(&self, served: Served, newest: Option<SignedReceipt>) {
        match served {
            Served::Job(job) => self.host.settle(job, newest).await,
            Served::Session(session) => self.host.session_stream_ended(session, newest).await,
        }
    }
}

/// Why the stream ended before the producer finished.
enum Stop {
    /// The client cancelled or closed its side.
    Cancelled,
    /// The client sent a frame that does not belong here, or a broken one.
    Broken(Error),
    /// A receipt was refused.
    BadReceipt(String),
    /// The window stayed full for the stall timeout.
    Unacknowledged,
    /// Writing to the client failed or stalled.
    Write(Error),
    /// The deposit pays for no more tokens: the prompt ends early.
    Exhausted,
}

/// Handles one client frame while streaming: a receipt is checked into `credit` (its
/// signature by ECDSA, or by asking the client's wallet when it is not the client's key).
async fn on_client_frame(
    frame: Option<Result<ClientFrame>>,
    credit: &mut Credit,
    host: &dyn HostService,
) -> Option<Stop> {
    match frame {
        None | Some(Ok(ClientFrame::Cancel)) => Some(Stop::Cancelled),
        Some(Ok(ClientFrame::Receipt(receipt))) => {
            let checked = match credit.check(&receipt) {
                Ok(checked) => checked,
                Err(reason) => return Some(Stop::BadReceipt(reason)),
            };
            if !checked.by_client()
                && !host
                    .wallet_accepts(credit.client(), checked.digest, &receipt.signature)
                    .await
            {
                return Some(Stop::BadReceipt(checked.wrong_signer()));
            }
            credit.keep(receipt, checked);
            None
        }
        Some(Ok(_)) => Some(Stop::Broken(Error::Truncated(
            "unexpected frame while streaming".into(),
        ))),
        Some(Err(e)) => Some(Stop::Broken(e)),
    }
}

/// Streams what `producer` sends on `rx` to the client within `credit`, then the final frame,
/// then waits (within the handshake timeout) for the final receipt and hands the newest to
/// the service.
pub(super) async fn stream_tokens(
    peer: PeerId,
    stream: libp2p::Stream,
    ctx: &HostContext,
    served: Served,
    mut credit: Credit,
    producer: Producer,
    mut rx: mpsc::Receiver<StreamToken>,
) -> Result<()> {
    let (reader, mut writer) = stream.split();
    let mut frames = client_frames(reader);
    let max_batch = ctx.config.max_batch_tokens.max(1);
    let byte_budget = MAX_FRAME_LEN / 2;
    let stall = ctx.config.stall_timeout;
    let mut next_index = 0u64;
    let mut batches = 0u64;
    let stopped = loop {
        // While the window is full only receipts (or the client's end) move the stream on.
        let token = if credit.has_room() {
            tokio::select! {
                frame = frames.next() => match on_client_frame(frame, &mut credit, ctx.host.as_ref()).await {
                    Some(stop) => break Some(stop),
                    None => continue,
                },
                token = rx.recv() => token,
            }
        } else if credit.exhausted() {
            break Some(Stop::Exhausted);
        } else {
            match tokio::time::timeout(stall, frames.next()).await {
                Err(_) => break Some(Stop::Unacknowledged),
                Ok(frame) => match on_client_frame(frame, &mut credit, ctx.host.as_ref()).await {
                    Some(stop) => break Some(stop),
                    None => continue,
                },
            }
        };
        let Some(token) = token else { break None };
        #[cfg(feature = "fault-injection")]
        if ctx.faults.get() == Some(crate::fault::StreamFault::Silent) {
            drop(rx);
            stop_producer(producer).await;
            // Writes nothing and holds the stream until the client leaves (bounded).
            let _ = tokio::time::timeout(stall.saturating_mul(4), async {
                while frames.next().await.is_some() {}
            })
            .await;
            ctx.finish(served, credit.newest()).await;
            return Err(protocol(peer, "injected fault: silent".into()));
        }
        #[cfg(feature = "fault-injection")]
        if ctx.faults.get() == Some(crate::fault::StreamFault::GarbageFrame) {
            drop(rx);
            stop_producer(producer).await;
            let _ =
                futures::AsyncWriteExt::write_all(&mut writer, &crate::fault::GARBAGE_FRAME).await;
            let _ = frame::close(&mut writer).await;
            ctx.finish(served, credit.newest()).await;
            return Err(protocol(peer, "injected fault: garbage frame".into()));
        }
        // Whatever queued up while the last frame was written goes out in this one, within
        // the window.
        credit.delivered(token.id, &token.text);
        let mut bytes = token.text.len() + 16;
        let mut tokens = vec![token];
        while tokens.len() < max_batch && bytes < byte_budget && credit.has_room() {
            match rx.try_recv() {
                Ok(token) => {
                    bytes += token.text.len() + 16;
                    credit.delivered(token.id, &token.text);
                    tokens.push(token);
                }
                Err(_) => break,
            }
        }
        let count = u64::try_from(tokens.len()).unwrap_or(u64::MAX);
        let frame = HostFrame::Tokens(TokenBatch {
            first_index: next_index,
            tokens,
        });
        // A client that stops reading altogether must not hold a stream slot forever.
        let written = tokio::time::timeout(stall, write_frame(&mut writer, &frame))
            .await
            .unwrap_or(Err(Error::Timeout {
                what: "client reading tokens",
                after: stall,
            }));
        if let Err(e) = written {
            break Some(Stop::Write(e));
        }
        next_index = next_index.saturating_add(count);
        batches += 1;
    };
    let last = match stopped {
        // A session prompt whose deposit ran out ends like a finished one.
        Some(Stop::Exhausted) if matches!(served, Served::Session(_)) => {
            drop(rx);
            stop_producer(producer).await;
            HostFrame::PromptDone(PromptDone {
                tokens: next_index,
                finish: FinishReason::Deposit,
            })
        }
        Some(stop) => {
            drop(rx);
            stop_producer(producer).await;
            // What was receipted is paid, whatever ended the stream.
            ctx.finish(served, credit.newest()).await;
            let (frame, result) = refusal(peer, stop);
            let _ = write_frame(&mut writer, &frame).await;
            let _ = frame::close(&mut writer).await;
            return result;
        }
        None => {
            tracing::debug!(
                %peer,
                tokens = next_index,
                batches,
                window = credit.window(),
                rtt_us = credit.rtt().map(|r| r.as_micros()),
                "stream produced"
            );
            match producer.await {
                Ok(Ok(Finished::Job(done))) => HostFrame::Done(done),
                Ok(Ok(Finished::Session(finish))) => HostFrame::PromptDone(PromptDone {
                    tokens: next_index,
                    finish,
                }),
                Ok(Err(e)) => HostFrame::Error(e),
                Err(e) => {
                    // A panic's text stays here: the peer learns only that generation stopped.
                    tracing::warn!(%peer, error = %e, "the generation task failed");
                    stream_error(StreamErrorCode::InferenceFailed, "generation stopped")
                }
            }
        }
    };
    let written = write_frame(&mut writer, &last).await;
    // The client answers the final frame with its final receipt; wait for every counted token
    // to be receipted (or the handshake timeout, or the client's end), then settle with the
    // newest.
    if written.is_ok() && matches!(last, HostFrame::Done(_) | HostFrame::PromptDone(_)) {
        let timeout = ctx.config.handshake_timeout;
        let _ = tokio::time::timeout(timeout, async {
            while !credit.settled_up() {
                if on_client_frame(frames.next().await, &mut credit, ctx.host.as_ref())
                    .await
                    .is_some()
                {
                    break;
                }
            }
        })
        .await;
    }
    ctx.finish(served, credit.newest()).await;
    written?;
    frame::close(&mut writer).await?;
    Ok(())
}

/// The frame that tells the client why its stream stopped, and how the host reports it.
fn refusal(peer: PeerId, stop: Stop) -> (HostFrame, Result<()>) {
    match stop {
        Stop::Cancelled => (
            stream_error(StreamErrorCode::Cancelled, "cancelled by client"),
            Ok(()),
        ),
        Stop::Broken(e) => (
            stream_error(StreamErrorCode::Malformed, e.to_string()),
            Err(e),
        ),
        Stop::BadReceipt(reason) => (
            stream_error(StreamErrorCode::BadReceipt, reason.clone()),
            Err(protocol(peer, reason)),
        ),
        Stop::Unacknowledged => (
            stream_error(
                StreamErrorCode::Unacknowledged,
                "no receipt within the window",
            ),
            Err(protocol(peer, "the client stopped sending receipts".into())),
        ),
        Stop::Write(e) => (
            stream_error(StreamErrorCode::InferenceFailed, e.to_string()),
            Err(e),
        ),
        // A job's producer is bounded by its terms, not by a deposit.
        Stop::Exhausted => (
            stream_error(StreamErrorCode::InferenceFailed, "no more tokens paid for"),
            Err(protocol(peer, "limit reached".into())),
        ),
    }
}

/// Gives a cancelled producer a moment to notice, then aborts it.
async fn stop_producer(producer: Producer) {
    let abort = producer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .is_err()
    {
        abort.abort();
    }
}
