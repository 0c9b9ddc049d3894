//! The client's side of `/fabstir/stream/1.0.0`: answers the host's challenge with a
//! [`ClientSigner`] (after checking that the address it names registered this peer id), sends the
//! prompt and reads a [`ClientStream`] of [`StreamEvent`]s, checking batch indices and the
//! host's signature over the final frame. Dropping the stream or calling
//! [`ClientStream::cancel`] stops the host's producer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use fabstir_core::JobId;
use fabstir_core::PromptEnd;
use fabstir_core::StreamEvent;
use fabstir_core::auth;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt, Transcript};
use fabstir_core::wire::{
    AuthChallenge, AuthResponse, ClientFrame, HostFrame, MAX_TOKEN_TEXT_BYTES, PromptFrame,
    StreamDone, TokenBatch,
};
use futures::{Stream, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::oneshot;

use crate::config::P2pConfig;
use crate::frame::{self, read_frame_within, write_frame};
use crate::pool::{ConnectionPool, PoolLease};
use crate::registry::node_peer_id;
use crate::signer::ClientSigner;
use crate::{Error, Result};
use fabstir_core::PeerRegistry;

mod session;

pub use session::SessionStream;
pub(crate) use session::{end_session, open_session};

/// Reads the next host frame within the handshake timeout.
async fn next_host_frame(
    stream: &mut libp2p::Stream,
    timeout: Duration,
) -> Result<Option<HostFrame>> {
    read_frame_within(stream, timeout, "host frame").await
}

/// The client's side of a stream: a [`Stream`] of events ending after the final one or an
/// error. Dropping it cancels what the host generates.
pub struct Events<T> {
    inner: Pin<Box<dyn Stream<Item = Result<T>> + Send>>,
    cancel: Option<oneshot::Sender<()>>,
}

/// The client's side of a token stream: [`StreamEvent`]s ending after
/// [`StreamEvent::Done`] or an error. Dropping it cancels the job.
pub type ClientStream = Events<StreamEvent>;

impl<T> std::fmt::Debug for Events<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl<T> Events<T> {
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

impl<T> Stream for Events<T> {
    type Item = Result<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// What ends a stream: a job's signed result, or a session prompt's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Job,
    Session,
}

/// What the reader yields; each public stream maps it to its own events.
enum Event {
    Tokens(TokenBatch),
    Job(StreamDone),
    Prompt(PromptEnd),
}

struct Reader {
    stream: libp2p::Stream,
    peer: PeerId,
    host: Address,
    job: JobId,
    chain_id: u64,
    ending: Ending,
    stall: Duration,
    next_index: u64,
    /// The most tokens the host may send on this stream (a session prompt's `max_tokens`;
    /// a job's are the SDK's to check, against the job's terms on chain).
    max_tokens: u64,
    receipts: Receipts,
    cancel: oneshot::Receiver<()>,
    done: bool,
    _lease: PoolLease,
}

enum Step {
    Cancel,
    Frame(Result<Option<HostFrame>>),
}

/// The client's receipts: the transcript of what it received, signed after each batch once
/// [`receipt_interval`](fabstir_core::receipt::receipt_interval) counted tokens are
/// unreceipted, and in full in answer to `Done`.
struct Receipts {
    signer: Arc<dyn ClientSigner>,
    domain: ReceiptDomain,
    transcript: Transcript,
    receipted: u64,
    /// Counted tokens after which a receipt goes out.
    every: u64,
    /// Counted tokens before this stream's first (a session's resume point).
    start: u64,
}

impl Receipts {
    /// Takes a checked batch; returns the receipt to send, if one is due.
    async fn after_batch(&mut self, job: JobId, batch: &TokenBatch) -> Result<Option<ClientFrame>> {
        for token in &batch.tokens {
            self.transcript.push(token.id, &token.text);
        }
        if self.transcript.counted() - self.receipted >= self.every {
            return self.sign(job).await.map(Some);
        }
        Ok(None)
    }

    /// The receipt for everything counted so far.
    async fn sign(&mut self, job: JobId) -> Result<ClientFrame> {
        let receipt = self.transcript.receipt(job);
        let signature = self
            .signer
            .sign_digest(receipt.digest(&self.domain))
            .await?;
        self.receipted = receipt.tokens;
        Ok(ClientFrame::Receipt(SignedReceipt {
            tokens: receipt.tokens,
            transcript: receipt.transcript,
            signature,
        }))
    }
}

impl Receipts {
    /// Receipts for `job` from `transcript` on, under a credit window of `window`.
    fn new(
        signer: Arc<dyn ClientSigner>,
        config: &P2pConfig,
        transcript: Transcript,
        window: u32,
    ) -> Self {
        Self {
            signer,
            domain: ReceiptDomain {
                chain_id: config.chain_id,
                marketplace: config.marketplace,
            },
            start: transcript.counted(),
            receipted: transcript.counted(),
            transcript,
            every: u64::from(fabstir_core::receipt::receipt_interval(window)),
        }
    }
}

impl Reader {
    fn new(
        ctx: &ClientContext<'_>,
        stream: libp2p::Stream,
        (peer, host, job): (PeerId, Address, JobId),
        ending: Ending,
        receipts: Receipts,
        lease: PoolLease,
    ) -> (Self, oneshot::Sender<()>) {
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let reader = Self {
            stream,
            peer,
            host,
            job,
            chain_id: ctx.config.chain_id,
            ending,
            stall: ctx.config.stream.stall_timeout,
            next_index: 0,
            max_tokens: u64::MAX,
            receipts,
            cancel: cancel_rx,
            done: false,
            _lease: lease,
        };
        (reader, cancel_tx)
    }

    /// The reader with a cap on the tokens the host may send.
    fn with_max_tokens(mut self, max_tokens: u64) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The reader as a stream of events, mapped by `map`, cancelled through `cancel`.
    fn into_events<T: Send + 'static>(
        self,
        map: fn(Event) -> Result<T>,
        cancel: oneshot::Sender<()>,
    ) -> Events<T> {
        let inner = futures::stream::unfold(self, move |mut reader| async move {
            reader
                .next_event()
                .await
                .map(|event| (event.and_then(map), reader))
        });
        Events {
            inner: Box::pin(inner),
            cancel: Some(cancel),
        }
    }

    async fn next_event(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        let stall = self.stall;
        let step = tokio::select! {
            biased;
            _ = &mut self.cancel => Step::Cancel,
            frame = read_frame_within(&mut self.stream, stall, "next stream frame") => Step::Frame(frame),
        };
        let protocol = |reason: &str| Error::Protocol {
            peer: self.peer.to_string(),
            reason: reason.to_owned(),
        };
        self.done = true;
        let event = match step {
            Step::Cancel => {
                let _ = write_frame(&mut self.stream, &ClientFrame::Cancel).await;
                let _ = frame::close(&mut self.stream).await;
                Err(Error::Cancelled)
            }
            Step::Frame(Err(e)) => Err(e),
            Step::Frame(Ok(None)) => Err(Error::Truncated(
                "stream ended before the final frame".into(),
            )),
            Step::Frame(Ok(Some(HostFrame::Tokens(batch)))) => {
                let count = u64::try_from(batch.tokens.len()).unwrap_or(u64::MAX);
                if batch.first_index != self.next_index {
                    Err(protocol(&format!(
                        "batch starts at token {}, expected {}",
                        batch.first_index, self.next_index
                    )))
                } else if self.next_index.saturating_add(count) > self.max_tokens {
                    Err(protocol(&format!(
                        "more than the {} tokens asked for",
                        self.max_tokens
                    )))
                } else if batch
                    .tokens
                    .iter()
                    .any(|t| t.text.len() > MAX_TOKEN_TEXT_BYTES)
                {
                    Err(protocol(&format!(
                        "a token's text is longer than {MAX_TOKEN_TEXT_BYTES} bytes"
                    )))
                } else {
                    self.next_index = self.next_index.saturating_add(count);
                    match self.receipts.after_batch(self.job, &batch).await {
                        Ok(None) => {
                            self.done = false;
                            Ok(Event::Tokens(batch))
                        }
                        Ok(Some(receipt)) => match write_frame(&mut self.stream, &receipt).await {
                            Ok(()) => {
                                self.done = false;
                                Ok(Event::Tokens(batch))
                            }
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
            }
            Step::Frame(Ok(Some(HostFrame::Done(done)))) if self.ending == Ending::Job => {
                let message = auth::result_message(
                    self.chain_id,
                    self.job,
                    &done.result_cid,
                    done.tokens_used,
                );
                match auth::verify_signer(&message, &done.signature, self.host) {
                    // The final receipt covers every counted token received; a host claiming
                    // more gets the receipt for what arrived, never more.
                    Ok(()) => match self.receipts.sign(self.job).await {
                        Ok(receipt) => {
                            let _ = write_frame(&mut self.stream, &receipt).await;
                            let _ = frame::close(&mut self.stream).await;
                            Ok(Event::Job(done))
                        }
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(Error::Unverified {
                        peer: self.peer.to_string(),
                        reason: format!("result signature: {e}"),
                    }),
                }
            }
            Step::Frame(Ok(Some(HostFrame::PromptDone(done))))
                if self.ending == Ending::Session =>
            {
                if done.tokens != self.next_index {
                    Err(protocol(&format!(
                        "prompt done after {} tokens, {} received",
                        done.tokens, self.next_index
                    )))
                } else {
                    // The receipt covers every counted token received, whatever the host says.
                    match self.receipts.sign(self.job).await {
                        Ok(receipt) => {
                            let _ = write_frame(&mut self.stream, &receipt).await;
                            let _ = frame::close(&mut self.stream).await;
                            Ok(Event::Prompt(PromptEnd {
                                tokens: self.next_index,
                                counted: self.receipts.receipted - self.receipts.start,
                                finish: done.finish,
                                receipted: self.receipts.receipted,
                            }))
                        }
                        Err(e) => Err(e),
                    }
                }
            }
            Step::Frame(Ok(Some(HostFrame::Error(e)))) => Err(remote(e)),
            Step::Frame(Ok(Some(_))) => Err(protocol("unexpected frame while streaming")),
        };
        Some(event)
    }
}

/// A host's refusal, as the client reports it.
fn remote(e: fabstir_core::wire::StreamError) -> Error {
    Error::Remote {
        code: e.code,
        message: e.message,
    }
}

/// The next handshake frame, the one `pick` accepts: a refusal is [`Error::Remote`], another
/// frame a protocol error saying what was `expected`, the end of the stream a truncation
/// saying when it `closed`.
async fn handshake_frame<T>(
    stream: &mut libp2p::Stream,
    timeout: Duration,
    peer: &PeerId,
    (expected, closed): (&str, &str),
    pick: impl FnOnce(HostFrame) -> Option<T>,
) -> Result<T> {
    match next_host_frame(stream, timeout).await? {
        Some(HostFrame::Error(e)) => Err(remote(e)),
        Some(frame) => pick(frame).ok_or_else(|| Error::Protocol {
            peer: peer.to_string(),
            reason: expected.to_owned(),
        }),
        None => Err(Error::Truncated(closed.to_owned())),
    }
}

/// Opens a raw stream of `protocol` (`/fabstir/stream/1.0.0` or `/fabstir/session/1.0.0`) to
/// a connected `peer`.
pub(crate) async fn open_raw(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    protocol: &'static str,
) -> Result<libp2p::Stream> {
    control
        .open_stream(peer, StreamProtocol::new(protocol))
        .await
        .map_err(|e| Error::OpenStream {
            peer: peer.to_string(),
            reason: e.to_string(),
        })
}

/// What the client side of a stream uses of its node.
pub(crate) struct ClientContext<'a> {
    /// The chain, the marketplace and the stream timeouts.
    pub(crate) config: &'a P2pConfig,
    /// Who owns the host's peer id.
    pub(crate) registry: &'a dyn PeerRegistry,
    /// Leases keep the connection open while the stream runs.
    pub(crate) pool: &'a Arc<ConnectionPool>,
}

/// Answers the host's challenge on a fresh `stream` for `job` (a job or a session): checks
/// that the address it names registered `peer` and that its window is within the cap, and
/// signs. Returns the challenge and a lease that keeps the connection while the stream runs.
pub(super) async fn authenticate(
    ctx: &ClientContext<'_>,
    stream: &mut libp2p::Stream,
    peer: PeerId,
    job: JobId,
    signer: &dyn ClientSigner,
) -> Result<(AuthChallenge, PoolLease)> {
    let config = ctx.config;
    let timeout = config.stream.handshake_timeout;
    let lease = ctx.pool.lease(peer, std::time::Instant::now());
    let challenge = handshake_frame(
        stream,
        timeout,
        &peer,
        ("expected a challenge", "stream closed before the challenge"),
        |frame| match frame {
            HostFrame::Challenge(c) => Some(c),
            _ => None,
        },
    )
    .await?;
    let node = ctx
        .registry
        .node(challenge.host)
        .await?
        .ok_or_else(|| Error::Unverified {
            peer: peer.to_string(),
            reason: format!("challenge names {:#x}, not in the registry", challenge.host),
        })?;
    if node.peer_id != node_peer_id(&peer)? {
        return Err(Error::Unverified {
            peer: peer.to_string(),
            reason: format!(
                "challenge names {:#x}, which registered peer id {}",
                challenge.host, node.peer_id
            ),
        });
    }
    if challenge.credit_window > config.stream.max_credit_window {
        return Err(Error::Unverified {
            peer: peer.to_string(),
            reason: format!(
                "asks a credit window of {} tokens, at most {} accepted",
                challenge.credit_window, config.stream.max_credit_window
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
    write_frame(stream, &answer).await?;
    Ok((challenge, lease))
}

/// Runs the client's handshake for `job` on a fresh `stream` to the host `peer` (see
/// [`Network::open_stream`](crate::Network::open_stream)) and returns the stream of tokens.
pub(crate) async fn open(
    ctx: ClientContext<'_>,
    mut stream: libp2p::Stream,
    peer: PeerId,
    job: JobId,
    signer: Arc<dyn ClientSigner>,
    prompt: PromptFrame,
) -> Result<ClientStream> {
    let (challenge, lease) = authenticate(&ctx, &mut stream, peer, job, signer.as_ref()).await?;
    handshake_frame(
        &mut stream,
        ctx.config.stream.handshake_timeout,
        &peer,
        (
            "expected authenticated",
            "stream closed during authentication",
        ),
        |frame| matches!(frame, HostFrame::Authenticated).then_some(()),
    )
    .await?;
    let transcript = Transcript::new(job, fabstir_core::job::prompt_hash(&prompt.prompt));
    let receipts = Receipts::new(signer, ctx.config, transcript, challenge.credit_window);
    write_frame(&mut stream, &ClientFrame::Prompt(prompt)).await?;
    let (reader, cancel) = Reader::new(
        &ctx,
        stream,
        (peer, challenge.host, job),
        Ending::Job,
        receipts,
        lease,
    );
    let map = |event| match event {
        Event::Tokens(batch) => Ok(StreamEvent::Tokens(batch)),
        Event::Job(done) => Ok(StreamEvent::Done(done)),
        // A job's reader accepts no prompt's end.
        Event::Prompt(_) => Err(Error::Truncated("a session frame on a job stream".into())),
    };
    Ok(reader.into_events(map, cancel))
}
