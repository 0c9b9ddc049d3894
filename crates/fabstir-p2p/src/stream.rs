//! `/fabstir/stream/1.0.0`: the authenticated token stream, host and client sides.
//!
//! Host: sends a challenge, checks the signed answer (single-use nonce, recovered client
//! address authorized by the [`HostService`]), reads the prompt, then streams token batches and
//! a final or error frame. Tokens are coalesced only when the client reads slower than the job
//! produces them. A malformed, oversized or truncated frame ends that stream only.
//!
//! Client: [`Network::open_stream`] answers the challenge with a [`ClientSigner`] and returns a
//! [`TokenStream`] of [`StreamEvent`]s; dropping it or calling [`TokenStream::cancel`] stops
//! the host's producer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fabstir_core::JobId;
use fabstir_core::auth::{self, ChallengeBook};
use fabstir_core::primitives::Address;
use fabstir_core::wire::{
    AuthChallenge, AuthResponse, ClientFrame, HostFrame, MAX_FRAME_LEN, PromptFrame,
    STREAM_PROTOCOL, StreamDone, StreamError, StreamErrorCode, StreamToken, TokenBatch,
};
use futures::{AsyncReadExt, AsyncWriteExt, Stream, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use rand::RngCore;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::config::{P2pConfig, StreamConfig};
use crate::frame::{read_frame, write_frame};
use crate::network::Network;
use crate::pool::{ConnectionPool, PoolLease};
use crate::registry::node_peer_id;
use crate::service::{HostService, TokenSink};
use crate::signer::ClientSigner;
use crate::{Error, Result};

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
    tokio::time::timeout(timeout, read_frame::<ClientFrame, _>(stream))
        .await
        .map_err(|_| Error::Timeout {
            what: "client frame",
            after: timeout,
        })?
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
        }),
    )
    .await?;

    let timeout = ctx.config.handshake_timeout;
    let answer = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::Auth(answer))) => answer,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(()),
        Ok(Some(ClientFrame::Prompt(_))) => {
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
    let client = match auth::recover_signer(&message, &answer.signature) {
        Ok(client) => client,
        Err(e) => {
            let frame = stream_error(StreamErrorCode::AuthFailed, e.to_string());
            return refuse(&mut stream, frame, protocol_error(e.to_string())).await;
        }
    };
    if let Err(refusal) = ctx.host.authorize(answer.job, client).await {
        let reason = refusal.message.clone();
        return refuse(
            &mut stream,
            HostFrame::Error(refusal),
            protocol_error(reason),
        )
        .await;
    }
    write_frame(&mut stream, &HostFrame::Authenticated).await?;

    let prompt = match next_client_frame(&mut stream, timeout).await {
        Ok(Some(ClientFrame::Prompt(prompt))) => prompt,
        Ok(None | Some(ClientFrame::Cancel)) => return Ok(()),
        Ok(Some(ClientFrame::Auth(_))) => {
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

/// What ended the client's side while tokens flowed.
enum ClientEnd {
    Cancelled,
    Broken(Error),
}

async fn watch_client(reader: &mut futures::io::ReadHalf<libp2p::Stream>) -> ClientEnd {
    match read_frame::<ClientFrame, _>(reader).await {
        Ok(Some(ClientFrame::Cancel) | None) => ClientEnd::Cancelled,
        Ok(Some(_)) => {
            ClientEnd::Broken(Error::Truncated("unexpected frame while streaming".into()))
        }
        Err(e) => ClientEnd::Broken(e),
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
    let (tx, mut rx) = mpsc::channel::<StreamToken>(ctx.config.token_buffer.max(1));
    let host = Arc::clone(&ctx.host);
    let producer =
        tokio::spawn(async move { host.run(job, client, prompt, TokenSink::new(tx)).await });
    let (mut reader, mut writer) = stream.split();
    let client_end = watch_client(&mut reader);
    tokio::pin!(client_end);
    let max_batch = ctx.config.max_batch_tokens.max(1);
    let byte_budget = MAX_FRAME_LEN / 2;
    let mut next_index = 0u64;
    let mut batches = 0u64;
    loop {
        let token = tokio::select! {
            end = &mut client_end => {
                // The client cancelled or went away: stop the producer.
                drop(rx);
                stop_producer(producer).await;
                return match end {
                    ClientEnd::Cancelled => {
                        let frame = stream_error(StreamErrorCode::Cancelled, "cancelled by client");
                        let _ = write_frame(&mut writer, &frame).await;
                        let _ = writer.close().await;
                        Ok(())
                    }
                    ClientEnd::Broken(e) => {
                        let frame = stream_error(StreamErrorCode::Malformed, e.to_string());
                        let _ = write_frame(&mut writer, &frame).await;
                        Err(e)
                    }
                };
            }
            token = rx.recv() => token,
        };
        let Some(token) = token else { break };
        #[cfg(feature = "fault-injection")]
        if ctx.faults.get() == Some(crate::fault::StreamFault::GarbageFrame) {
            drop(rx);
            stop_producer(producer).await;
            let _ = writer.write_all(&crate::fault::GARBAGE_FRAME).await;
            let _ = writer.close().await;
            return Err(Error::Protocol {
                peer: peer.to_string(),
                reason: "injected fault: garbage frame".into(),
            });
        }
        // Whatever queued up while the last frame was written goes out in this one.
        let mut bytes = token.text.len() + 16;
        let mut tokens = vec![token];
        while tokens.len() < max_batch && bytes < byte_budget {
            match rx.try_recv() {
                Ok(token) => {
                    bytes += token.text.len() + 16;
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
        let stall = ctx.config.stall_timeout;
        let written = tokio::time::timeout(stall, write_frame(&mut writer, &frame))
            .await
            .unwrap_or(Err(Error::Timeout {
                what: "client reading tokens",
                after: stall,
            }));
        if let Err(e) = written {
            drop(rx);
            stop_producer(producer).await;
            if let Error::Wire(_) = e {
                let frame = stream_error(StreamErrorCode::InferenceFailed, e.to_string());
                let _ = write_frame(&mut writer, &frame).await;
            }
            return Err(e);
        }
        next_index = next_index.saturating_add(count);
        batches += 1;
    }
    tracing::debug!(%peer, tokens = next_index, batches, "job produced");
    let last = match producer.await {
        Ok(Ok(done)) => HostFrame::Done(done),
        Ok(Err(e)) => HostFrame::Error(e),
        Err(e) => stream_error(StreamErrorCode::InferenceFailed, format!("job task: {e}")),
    };
    write_frame(&mut writer, &last).await?;
    writer.close().await?;
    Ok(())
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

/// Reads the next host frame within the handshake timeout.
async fn next_host_frame(
    stream: &mut libp2p::Stream,
    timeout: Duration,
) -> Result<Option<HostFrame>> {
    tokio::time::timeout(timeout, read_frame::<HostFrame, _>(stream))
        .await
        .map_err(|_| Error::Timeout {
            what: "host frame",
            after: timeout,
        })?
}

/// What a client receives on a token stream (the core port type).
pub use fabstir_core::StreamEvent;

/// The client's side of a token stream: a [`Stream`] of [`StreamEvent`]s ending after
/// [`StreamEvent::Done`] or an error. Dropping it cancels the job.
pub struct TokenStream {
    inner: Pin<Box<dyn Stream<Item = Result<StreamEvent>> + Send>>,
    cancel: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for TokenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStream").finish_non_exhaustive()
    }
}

impl TokenStream {
    /// Asks the host to stop generating, then ends the stream.
    pub async fn cancel(mut self) -> Result<()> {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
        while let Some(event) = self.inner.next().await {
            match event {
                Err(Error::Cancelled) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

impl Stream for TokenStream {
    type Item = Result<StreamEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

struct Reader {
    stream: libp2p::Stream,
    peer: PeerId,
    host: Address,
    job: JobId,
    chain_id: u64,
    stall: Duration,
    next_index: u64,
    cancel: oneshot::Receiver<()>,
    done: bool,
    _lease: PoolLease,
}

enum Step {
    Cancel,
    Frame(Result<Option<HostFrame>>),
}

impl Reader {
    async fn next_event(&mut self) -> Option<Result<StreamEvent>> {
        if self.done {
            return None;
        }
        let stall = self.stall;
        let step = tokio::select! {
            biased;
            _ = &mut self.cancel => Step::Cancel,
            frame = tokio::time::timeout(stall, read_frame::<HostFrame, _>(&mut self.stream)) => {
                Step::Frame(frame.unwrap_or(Err(Error::Timeout { what: "next stream frame", after: stall })))
            }
        };
        let protocol = |reason: &str| Error::Protocol {
            peer: self.peer.to_string(),
            reason: reason.to_owned(),
        };
        self.done = true;
        let event = match step {
            Step::Cancel => {
                let _ = write_frame(&mut self.stream, &ClientFrame::Cancel).await;
                let _ = self.stream.close().await;
                Err(Error::Cancelled)
            }
            Step::Frame(Err(e)) => Err(e),
            Step::Frame(Ok(None)) => Err(Error::Truncated(
                "stream ended before the final frame".into(),
            )),
            Step::Frame(Ok(Some(HostFrame::Tokens(batch)))) => {
                if batch.first_index != self.next_index {
                    Err(protocol(&format!(
                        "batch starts at token {}, expected {}",
                        batch.first_index, self.next_index
                    )))
                } else {
                    let count = u64::try_from(batch.tokens.len()).unwrap_or(u64::MAX);
                    self.next_index = self.next_index.saturating_add(count);
                    self.done = false;
                    Ok(StreamEvent::Tokens(batch))
                }
            }
            Step::Frame(Ok(Some(HostFrame::Done(done)))) => {
                let message = auth::result_message(
                    self.chain_id,
                    self.job,
                    &done.result_cid,
                    done.tokens_used,
                );
                match auth::verify_signer(&message, &done.signature, self.host) {
                    Ok(()) => Ok(StreamEvent::Done(done)),
                    Err(e) => Err(Error::Unverified {
                        peer: self.peer.to_string(),
                        reason: format!("result signature: {e}"),
                    }),
                }
            }
            Step::Frame(Ok(Some(HostFrame::Error(e)))) => Err(Error::Remote {
                code: e.code,
                message: e.message,
            }),
            Step::Frame(Ok(Some(_))) => Err(protocol("handshake frame while streaming")),
        };
        Some(event)
    }
}

impl Network {
    /// Opens a raw `/fabstir/stream/1.0.0` stream to `peer` (dialing if needed), without the
    /// handshake: for diagnostics and protocol tests. Use [`Network::open_stream`] for jobs.
    pub async fn open_raw_stream(&self, peer: PeerId) -> Result<libp2p::Stream> {
        self.connect(peer).await?;
        let mut control = self.clone_control();
        control
            .open_stream(peer, StreamProtocol::new(STREAM_PROTOCOL))
            .await
            .map_err(|e| Error::OpenStream {
                peer: peer.to_string(),
                reason: e.to_string(),
            })
    }

    /// Opens an authenticated token stream for `job` to the host `peer`: answers its
    /// challenge with `signer` (after checking the challenge names the registry's owner of
    /// `peer`), sends `prompt`, and returns the stream of tokens.
    ///
    /// Refusals by the host come back as [`Error::Remote`] with its code (`AuthFailed`,
    /// `ChallengeExpired`, `UnknownJob`...).
    pub async fn open_stream(
        &self,
        peer: PeerId,
        job: JobId,
        signer: &dyn ClientSigner,
        prompt: PromptFrame,
    ) -> Result<TokenStream> {
        let config = self.config();
        let timeout = config.stream.handshake_timeout;
        let mut stream = self.open_raw_stream(peer).await?;
        let lease = self.pool().lease(peer, std::time::Instant::now());
        let protocol = |reason: String| Error::Protocol {
            peer: peer.to_string(),
            reason,
        };
        let challenge = match next_host_frame(&mut stream, timeout).await? {
            Some(HostFrame::Challenge(c)) => c,
            Some(HostFrame::Error(e)) => {
                return Err(Error::Remote {
                    code: e.code,
                    message: e.message,
                });
            }
            Some(_) => return Err(protocol("expected a challenge".into())),
            None => {
                return Err(Error::Truncated(
                    "stream closed before the challenge".into(),
                ));
            }
        };
        let owner = self
            .registry()
            .node_by_peer(&node_peer_id(&peer)?)
            .await?
            .ok_or_else(|| Error::Unverified {
                peer: peer.to_string(),
                reason: "not in the registry".into(),
            })?;
        if owner.address != challenge.host {
            return Err(Error::Unverified {
                peer: peer.to_string(),
                reason: format!(
                    "challenge names {:#x}, registry owner is {:#x}",
                    challenge.host, owner.address
                ),
            });
        }
        let message = auth::client_auth_message(
            config.chain_id,
            config.marketplace,
            job,
            challenge.host,
            &challenge.nonce,
        );
        let signature = signer.sign_message(&message).await?;
        let answer = ClientFrame::Auth(AuthResponse {
            job,
            nonce: challenge.nonce,
            signature,
        });
        write_frame(&mut stream, &answer).await?;
        match next_host_frame(&mut stream, timeout).await? {
            Some(HostFrame::Authenticated) => {}
            Some(HostFrame::Error(e)) => {
                return Err(Error::Remote {
                    code: e.code,
                    message: e.message,
                });
            }
            Some(_) => return Err(protocol("expected authenticated".into())),
            None => {
                return Err(Error::Truncated(
                    "stream closed during authentication".into(),
                ));
            }
        }
        write_frame(&mut stream, &ClientFrame::Prompt(prompt)).await?;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let reader = Reader {
            stream,
            peer,
            host: challenge.host,
            job,
            chain_id: config.chain_id,
            stall: config.stream.stall_timeout,
            next_index: 0,
            cancel: cancel_rx,
            done: false,
            _lease: lease,
        };
        let inner = futures::stream::unfold(reader, |mut reader| async move {
            reader.next_event().await.map(|event| (event, reader))
        });
        Ok(TokenStream {
            inner: Box::pin(inner),
            cancel: Some(cancel_tx),
        })
    }
}
