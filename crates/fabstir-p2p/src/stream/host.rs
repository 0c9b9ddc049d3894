//! The host's side of `/fabstir/stream/1.0.0`: sends a challenge, checks the signed answer
//! (single-use nonce, recovered client address authorized by the [`HostService`]), reads the
//! prompt, then streams token batches within the credit window (checking the client's
//! receipts as they come) and a final or error frame, and settles with the newest receipt.
//! Tokens are coalesced only when the client reads slower than the job produces them. A
//! malformed, oversized or truncated frame ends that stream only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabstir_core::JobId;
use fabstir_core::auth::{self, ChallengeBook};
use fabstir_core::primitives::Address;
use fabstir_core::receipt::ReceiptDomain;
use fabstir_core::wire::{
    AuthChallenge, ClientFrame, HostFrame, MAX_FRAME_LEN, PromptFrame, STREAM_PROTOCOL, StreamDone,
    StreamError, StreamErrorCode, StreamToken, TokenBatch,
};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use rand::RngCore;
use tokio::sync::{Semaphore, mpsc, watch};

use super::credit::Credit;
use crate::config::{P2pConfig, StreamConfig};
use crate::frame::{read_frame, read_frame_within, write_frame};
use crate::pool::ConnectionPool;
use crate::service::{ClientProof, HostService, StreamSink};
use crate::{Error, Result};
use fabstir_core::clock::unix_now;

fn stream_error(code: StreamErrorCode, message: impl Into<String>) -> HostFrame {
    HostFrame::Error(StreamError {
        code,
        message: message.into(),
    })
}

struct HostContext {
    host: Arc<dyn HostService>,
    book: Mutex<ChallengeBook>,
    chain_id: u64,
    marketplace: Address,
    config: StreamConfig,
    permits: Arc<Semaphore>,
    pool: Arc<ConnectionPool>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::fault::FaultSlot>,
}

/// Starts accepting `/fabstir/stream/1.0.0` streams for `host` until `shutdown` flips.
pub(crate) fn spawn_host(
    mut control: libp2p_stream::Control,
    host: Arc<dyn HostService>,
    config: &P2pConfig,
    pool: Arc<ConnectionPool>,
    mut shutdown: watch::Receiver<bool>,
    #[cfg(feature = "fault-injection")] faults: Arc<crate::fault::FaultSlot>,
) -> Result<()> {
    let mut incoming = control
        .accept(StreamProtocol::new(STREAM_PROTOCOL))
        .map_err(|e| Error::Config(format!("stream protocol: {e}")))?;
    let ctx = Arc::new(HostContext {
        host,
        book: Mutex::new(ChallengeBook::new(
            config.stream.challenge_ttl.as_secs().max(1),
            config.stream.challenge_capacity,
        )),
        chain_id: config.chain_id,
        marketplace: config.marketplace,
        config: config.stream,
        permits: Arc::new(Semaphore::new(config.stream.max_concurrent.max(1))),
        pool,
        #[cfg(feature = "fault-injection")]
        faults,
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = incoming.next() => match next {
                    Some((peer, stream)) => {
                        let ctx = Arc::clone(&ctx);
                        tokio::spawn(async move {
                            if let Err(e) = serve(peer, stream, &ctx).await {
                                tracing::debug!(%peer, error = %e, "stream dropped");
                            }
                        });
                    }
                    None => break,
                },
                _ = shutdown.changed() => break,
            }
        }
    });
    Ok(())
}

/// Reads the next client frame within the handshake timeout; `Ok(None)` if the client left.
async fn next_client_frame(
    stream: &mut libp2p::Stream,
    timeout: Duration,
) -> Result<Option<ClientFrame>> {
    read_frame_within(stream, timeout, "client frame").await
}

/// Sends an error frame (best effort: the client may be gone) and ends the stream.
async fn refuse(stream: &mut libp2p::Stream, frame: HostFrame, error: Error) -> Result<()> {
    let _ = write_frame(stream, &frame).await;
    let _ = stream.close().await;
    Err(error)
}

async fn serve(peer: PeerId, mut stream: libp2p::Stream, ctx: &HostContext) -> Result<()> {
    let Ok(_permit) = Arc::clone(&ctx.permits).try_acquire_owned() else {
        let frame = stream_error(StreamErrorCode::Unavailable, "too many streams");
        return refuse(&mut stream, frame, Error::Cancelled).await;
    };
    let _lease = ctx.pool.lease(peer, std::time::Instant::now());
    let protocol_error = |reason: String| Error::Protocol {
        peer: peer.to_string(),
        reason,
    };
    let host = ctx.host.address();
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let expires_at = ctx
        .book
        .lock()
        .map_err(|_| protocol_error("challenge book poisoned".into()))?
        .issue(nonce, unix_now());
    write_frame(
        &mut stream,
        &HostFrame::Challenge(AuthChallenge {
            nonce,
            expires_at,
            host,
            credit_window: ctx.config.credit_window,
        }),
    )
    .await?;

    let timeout = ctx.config.handshake_timeout;
    let answer = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::Auth(answer))) => answer,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(()),
        Ok(Some(ClientFrame::Prompt(_) | ClientFrame::Receipt(_))) => {
            let frame = stream_error(StreamErrorCode::Malformed, "expected auth");
            return refuse(
                &mut stream,
                frame,
                protocol_error("prompt before auth".into()),
            )
            .await;
        }
        Err(e) => {
            let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
            return refuse(&mut stream, frame, e).await;
        }
    };
    let consumed = ctx
        .book
        .lock()
        .map_err(|_| protocol_error("challenge book poisoned".into()))?
        .consume(&answer.nonce, unix_now());
    if let Err(e) = consumed {
        let frame = stream_error(StreamErrorCode::ChallengeExpired, e.to_string());
        return refuse(&mut stream, frame, protocol_error(e.to_string())).await;
    }
    if answer.nonce != nonce {
        let frame = stream_error(StreamErrorCode::AuthFailed, "answer to another challenge");
        return refuse(&mut stream, frame, protocol_error("wrong nonce".into())).await;
    }
    let message =
        auth::client_auth_message(ctx.chain_id, ctx.marketplace, answer.job, host, &nonce);
    // A contract wallet's signature need not be ECDSA: the service asks the wallet.
    let digest = auth::message_digest(&message);
    let proof = ClientProof {
        digest,
        recovered: auth::recover_digest(digest, &answer.signature).ok(),
        signature: answer.signature,
    };
    let client = match ctx.host.authorize(answer.job, &proof).await {
        Ok(client) => client,
        Err(refusal) => {
            let reason = refusal.message.clone();
            return refuse(
                &mut stream,
                HostFrame::Error(refusal),
                protocol_error(reason),
            )
            .await;
        }
    };
    write_frame(&mut stream, &HostFrame::Authenticated).await?;

    let prompt = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::Prompt(prompt))) => prompt,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(()),
        Ok(Some(ClientFrame::Auth(_) | ClientFrame::Receipt(_))) => {
            let frame = stream_error(StreamErrorCode::Malformed, "expected prompt");
            return refuse(&mut stream, frame, protocol_error("auth twice".into())).await;
        }
        Err(e) => {
            let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
            return refuse(&mut stream, frame, e).await;
        }
    };
    run_job(peer, stream, ctx, answer.job, client, prompt).await
}

/// A frame from the client while tokens flow, or the end of its side.
type ClientFrames = std::pin::Pin<Box<dyn futures::Stream<Item = Result<ClientFrame>> + Send>>;

fn client_frames(reader: futures::io::ReadHalf<libp2p::Stream>) -> ClientFrames {
    Box::pin(futures::stream::unfold(reader, |mut reader| async move {
        match read_frame::<ClientFrame, _>(&mut reader).await {
            Ok(Some(frame)) => Some((Ok(frame), reader)),
            Ok(None) => None,
            Err(e) => Some((Err(e), reader)),
        }
    }))
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

async fn run_job(
    peer: PeerId,
    stream: libp2p::Stream,
    ctx: &HostContext,
    job: JobId,
    client: Address,
    prompt: PromptFrame,
) -> Result<()> {
    let domain = ReceiptDomain {
        chain_id: ctx.chain_id,
        marketplace: ctx.marketplace,
    };
    let prompt_hash = fabstir_core::job::prompt_hash(&prompt.prompt);
    let mut credit = Credit::new(job, client, prompt_hash, domain, ctx.config.credit_window);
    let (tx, mut rx) = mpsc::channel::<StreamToken>(ctx.config.token_buffer.max(1));
    let host = Arc::clone(&ctx.host);
    let producer =
        tokio::spawn(async move { host.run(job, client, prompt, StreamSink::new(tx)).await });
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
            ctx.host.settle(job, credit.newest()).await;
            return Err(Error::Protocol {
                peer: peer.to_string(),
                reason: "injected fault: silent".into(),
            });
        }
        #[cfg(feature = "fault-injection")]
        if ctx.faults.get() == Some(crate::fault::StreamFault::GarbageFrame) {
            drop(rx);
            stop_producer(producer).await;
            let _ = writer.write_all(&crate::fault::GARBAGE_FRAME).await;
            let _ = writer.close().await;
            ctx.host.settle(job, credit.newest()).await;
            return Err(Error::Protocol {
                peer: peer.to_string(),
                reason: "injected fault: garbage frame".into(),
            });
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
    if let Some(stop) = stopped {
        drop(rx);
        stop_producer(producer).await;
        // What was receipted is paid, whatever ended the stream.
        ctx.host.settle(job, credit.newest()).await;
        let (frame, result) = match stop {
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
        };
        let _ = write_frame(&mut writer, &frame).await;
        let _ = writer.close().await;
        return result;
    }
    tracing::debug!(
        %peer,
        tokens = next_index,
        batches,
        window = credit.window(),
        rtt_us = credit.rtt().map(|r| r.as_micros()),
        "job produced"
    );
    let last = match producer.await {
        Ok(Ok(done)) => HostFrame::Done(done),
        Ok(Err(e)) => HostFrame::Error(e),
        Err(e) => stream_error(StreamErrorCode::InferenceFailed, format!("job task: {e}")),
    };
    let written = write_frame(&mut writer, &last).await;
    // The client answers `Done` with its final receipt; wait for every counted token to be
    // receipted (or the handshake timeout, or the client's end), then settle with the newest.
    if written.is_ok() && matches!(last, HostFrame::Done(_)) {
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
    ctx.host.settle(job, credit.newest()).await;
    written?;
    writer.close().await?;
    Ok(())
}

fn protocol(peer: PeerId, reason: String) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        reason,
    }
}

/// Gives a cancelled producer a moment to notice, then aborts it.
async fn stop_producer(producer: tokio::task::JoinHandle<Result<StreamDone, StreamError>>) {
    let abort = producer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), producer)
        .await
        .is_err()
    {
        abort.abort();
    }
}
