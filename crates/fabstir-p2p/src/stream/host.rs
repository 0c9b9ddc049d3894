//! The host's side of `/fabstir/stream/1.0.0` and `/fabstir/session/1.0.0`: sends a
//! challenge, checks the signed answer (single-use nonce, recovered client address authorized
//! by the [`HostService`]), reads the prompt (a job's, or a session's after saying where the
//! session resumes), then streams token batches within the credit window ([`tokens`]) and a
//! final or error frame, and hands the newest receipt to the service. A malformed, oversized
//! or truncated frame ends that stream only.

mod session;
mod slots;
mod tokens;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabstir_core::JobId;
use fabstir_core::auth::{self, ChallengeBook};
use fabstir_core::primitives::Address;
use fabstir_core::receipt::{ReceiptDomain, Transcript};
use fabstir_core::wire::{
    AuthChallenge, AuthResponse, ClientFrame, HostFrame, PromptFrame, SESSION_PROTOCOL,
    STREAM_PROTOCOL, StreamError, StreamErrorCode, StreamToken,
};
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use rand::RngCore;
use tokio::sync::{mpsc, watch};

use self::slots::{Full, PeerSlots, Slot};
use self::tokens::{Finished, Served, stream_tokens};
use super::credit::Credit;
use crate::config::{P2pConfig, StreamConfig};
use crate::frame::{self, read_frame, read_frame_within, read_handshake_frame_within, write_frame};
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
    /// Streams not yet authorized.
    handshakes: Arc<PeerSlots>,
    /// Streams serving tokens.
    streams: Arc<PeerSlots>,
    pool: Arc<ConnectionPool>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::fault::FaultSlot>,
}

impl HostContext {
    /// A slot for an authorized stream of `peer`, with a lease on its connection (never
    /// closed to make room while it streams), or which cap is reached.
    fn stream_slot(&self, peer: PeerId) -> Result<(Slot, crate::pool::PoolLease), Full> {
        let slot = self.streams.try_take(peer)?;
        Ok((slot, self.pool.lease(peer, std::time::Instant::now())))
    }

    /// What receipts on this host's streams are signed for.
    fn receipt_domain(&self) -> ReceiptDomain {
        ReceiptDomain {
            chain_id: self.chain_id,
            marketplace: self.marketplace,
        }
    }
}

/// Which protocol a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/fabstir/stream/1.0.0`: one job.
    Job,
    /// `/fabstir/session/1.0.0`: one prompt of a session.
    Session,
}

/// Starts accepting `/fabstir/stream/1.0.0` and `/fabstir/session/1.0.0` streams for `host`
/// until `shutdown` flips.
pub(crate) fn spawn_host(
    mut control: libp2p_stream::Control,
    host: Arc<dyn HostService>,
    config: &P2pConfig,
    pool: Arc<ConnectionPool>,
    mut shutdown: watch::Receiver<bool>,
    #[cfg(feature = "fault-injection")] faults: Arc<crate::fault::FaultSlot>,
) -> Result<()> {
    let mut accept = |protocol: &'static str, kind: Kind| {
        control
            .accept(StreamProtocol::new(protocol))
            .map(|incoming| incoming.map(move |(peer, stream)| (peer, stream, kind)))
            .map_err(|e| Error::Config(format!("{protocol}: {e}")))
    };
    let mut incoming = futures::stream::select(
        accept(STREAM_PROTOCOL, Kind::Job)?,
        accept(SESSION_PROTOCOL, Kind::Session)?,
    );
    let ctx = Arc::new(HostContext {
        host,
        book: Mutex::new(ChallengeBook::new(
            config.stream.challenge_ttl.as_secs().max(1),
            config.stream.challenge_capacity,
        )),
        chain_id: config.chain_id,
        marketplace: config.marketplace,
        config: config.stream,
        handshakes: PeerSlots::new(
            config.stream.max_handshakes,
            config.stream.max_handshakes_per_peer,
        ),
        streams: PeerSlots::new(
            config.stream.max_concurrent,
            config.stream.max_streams_per_peer,
        ),
        pool,
        #[cfg(feature = "fault-injection")]
        faults,
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                next = incoming.next() => match next {
                    Some((peer, stream, kind)) => {
                        let ctx = Arc::clone(&ctx);
                        tokio::spawn(async move {
                            if let Err(e) = serve(peer, stream, kind, &ctx).await {
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

/// The frame that refuses a stream over a cap.
fn over_cap(full: Full) -> HostFrame {
    let message = match full {
        Full::Total => "too many streams",
        Full::Peer => "too many streams from this peer",
    };
    stream_error(StreamErrorCode::Unavailable, message)
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
    let _ = frame::close(stream).await;
    Err(error)
}

/// Ends the stream with the service's refusal.
async fn refused(stream: &mut libp2p::Stream, peer: PeerId, refusal: StreamError) -> Result<()> {
    let reason = refusal.message.clone();
    refuse(stream, HostFrame::Error(refusal), protocol(peer, reason)).await
}

/// A frame that does not belong at this point of the handshake: refused as malformed.
async fn out_of_order(stream: &mut libp2p::Stream, peer: PeerId, expected: &str) -> Result<()> {
    let frame = stream_error(StreamErrorCode::Malformed, format!("expected {expected}"));
    refuse(
        stream,
        frame,
        protocol(peer, format!("expected {expected}")),
    )
    .await
}

async fn serve(
    peer: PeerId,
    mut stream: libp2p::Stream,
    kind: Kind,
    ctx: &HostContext,
) -> Result<()> {
    // A stranger holds a handshake slot, never a stream slot: those are taken once the
    // service has authorized the stream (the job's or the session's own client).
    let handshake = match ctx.handshakes.try_take(peer) {
        Ok(slot) => slot,
        Err(full) => return refuse(&mut stream, over_cap(full), Error::Cancelled).await,
    };
    let Some((answer, proof)) = authenticate(peer, &mut stream, ctx).await? else {
        return Ok(());
    };
    if kind == Kind::Session {
        return session::serve_session(peer, stream, ctx, answer.job, proof, handshake).await;
    }
    let client = match ctx.host.authorize(answer.job, &proof).await {
        Ok(client) => client,
        Err(refusal) => {
            let reason = refusal.message.clone();
            return refuse(
                &mut stream,
                HostFrame::Error(refusal),
                protocol(peer, reason),
            )
            .await;
        }
    };
    let _serving = match ctx.stream_slot(peer) {
        Ok(serving) => serving,
        Err(full) => return refuse(&mut stream, over_cap(full), Error::Cancelled).await,
    };
    drop(handshake);
    write_frame(&mut stream, &HostFrame::Authenticated).await?;

    let timeout = ctx.config.handshake_timeout;
    let prompt = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::Prompt(prompt))) => prompt,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(()),
        Ok(Some(_)) => return out_of_order(&mut stream, peer, "prompt").await,
        Err(e) => {
            let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
            return refuse(&mut stream, frame, e).await;
        }
    };
    run_job(peer, stream, ctx, answer.job, client, prompt).await
}

/// Sends a fresh challenge and checks the answer: the nonce is this stream's, unused and
/// unexpired. Returns the answer and the proof to authorize (`None`: the client left).
async fn authenticate(
    peer: PeerId,
    stream: &mut libp2p::Stream,
    ctx: &HostContext,
) -> Result<Option<(AuthResponse, ClientProof)>> {
    let protocol_error = |reason: &str| protocol(peer, reason.to_owned());
    let host = ctx.host.address();
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let expires_at = ctx
        .book
        .lock()
        .map_err(|_| protocol_error("challenge book poisoned"))?
        .issue(nonce, unix_now());
    // However this stream ends, its nonce leaves the book with it.
    let _issued = Issued { ctx, nonce };
    write_frame(
        stream,
        &HostFrame::Challenge(AuthChallenge {
            nonce,
            expires_at,
            host,
            credit_window: ctx.config.credit_window,
        }),
    )
    .await?;

    let timeout = ctx.config.handshake_timeout;
    let answer = match read_handshake_frame_within(stream, timeout, "auth answer").await {
        Ok(Some(ClientFrame::Auth(answer))) => answer,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(None),
        Ok(Some(_)) => return out_of_order(stream, peer, "auth").await.map(|()| None),
        Err(e) => {
            let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
            return refuse(stream, frame, e).await.map(|()| None);
        }
    };
    // This stream's own nonce, checked before the book is touched: an answer naming another
    // stream's nonce (a replay) must not use that one up.
    if answer.nonce != nonce {
        let frame = stream_error(
            StreamErrorCode::ChallengeExpired,
            "answer to another challenge",
        );
        return refuse(stream, frame, protocol_error("wrong nonce"))
            .await
            .map(|()| None);
    }
    let consumed = ctx
        .book
        .lock()
        .map_err(|_| protocol_error("challenge book poisoned"))?
        .consume(&nonce, unix_now());
    if let Err(e) = consumed {
        let frame = stream_error(StreamErrorCode::ChallengeExpired, e.to_string());
        return refuse(stream, frame, protocol_error(&e.to_string()))
            .await
            .map(|()| None);
    }
    let message =
        auth::client_auth_message(ctx.chain_id, ctx.marketplace, answer.job, host, &nonce);
    // A contract wallet's signature need not be ECDSA: the service asks the wallet.
    let digest = auth::message_digest(&message);
    let proof = ClientProof {
        digest,
        recovered: auth::recover_digest(digest, &answer.signature).ok(),
        signature: answer.signature.clone(),
    };
    Ok(Some((answer, proof)))
}

/// A nonce issued on this stream: withdrawn from the book when dropped (consumed or not, it
/// is never answered on another stream).
struct Issued<'a> {
    ctx: &'a HostContext,
    nonce: [u8; 32],
}

impl Drop for Issued<'_> {
    fn drop(&mut self) {
        if let Ok(mut book) = self.ctx.book.lock() {
            book.withdraw(&self.nonce);
        }
    }
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

async fn run_job(
    peer: PeerId,
    stream: libp2p::Stream,
    ctx: &HostContext,
    job: JobId,
    client: Address,
    prompt: PromptFrame,
) -> Result<()> {
    let transcript = Transcript::new(job, fabstir_core::job::prompt_hash(&prompt.prompt));
    let credit = Credit::new(
        job,
        client,
        transcript,
        ctx.receipt_domain(),
        ctx.config.credit_window,
    );
    let (tx, rx) = mpsc::channel::<StreamToken>(ctx.config.token_buffer.max(1));
    let host = Arc::clone(&ctx.host);
    let producer = tokio::spawn(async move {
        host.run(job, client, prompt, StreamSink::new(tx))
            .await
            .map(Finished::Job)
    });
    stream_tokens(peer, stream, ctx, Served::Job(job), credit, producer, rx).await
}

fn protocol(peer: PeerId, reason: String) -> Error {
    Error::Protocol {
        peer: peer.to_string(),
        reason,
    }
}
