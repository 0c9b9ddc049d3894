//! The stream of generated tokens and the handle its producer writes to.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Error, FinishReason, GeneratedToken, Result, Usage};

/// What the producer sends to the stream.
#[derive(Debug)]
enum Message {
    Token(GeneratedToken),
    Done {
        reason: FinishReason,
        usage: Option<Usage>,
    },
    Failed(Error),
}

/// The tokens of one generation, in order, as they are produced.
///
/// It is a [`Stream`] of `Result<GeneratedToken>`. When it has ended, [`usage`](Self::usage)
/// and [`finish_reason`](Self::finish_reason) say what was used and why it stopped.
/// Dropping the stream cancels generation.
#[derive(Debug)]
pub struct TokenStream {
    rx: mpsc::Receiver<Message>,
    cancel: CancellationToken,
    usage: Usage,
    finish_reason: Option<FinishReason>,
    ended: bool,
}

/// The producer's side of a [`TokenStream`], for implementations of
/// [`InferenceBackend`](crate::InferenceBackend).
#[derive(Debug)]
pub struct TokenSink {
    tx: mpsc::Sender<Message>,
    cancel: CancellationToken,
}

/// The consumer dropped or cancelled the stream; the producer should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token stream was dropped or cancelled")]
pub struct StreamClosed;

impl TokenStream {
    /// Creates a stream and its producer handle, joined by a channel of `capacity` messages
    /// (at least 1).
    ///
    /// `prompt_tokens` is the prompt's size for [`usage`](Self::usage); the stream counts the
    /// completion tokens itself unless the producer reports usage when it finishes. The stream
    /// listens to a child of `cancel`: cancelling `cancel` stops it, dropping the stream
    /// does not cancel `cancel`.
    pub fn channel(
        capacity: usize,
        prompt_tokens: u32,
        cancel: &CancellationToken,
    ) -> (TokenSink, TokenStream) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let cancel = cancel.child_token();
        let sink = TokenSink {
            tx,
            cancel: cancel.clone(),
        };
        let stream = TokenStream {
            rx,
            cancel,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
            },
            finish_reason: None,
            ended: false,
        };
        (sink, stream)
    }

    /// Tokens used so far; final once the stream has ended.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Why generation stopped, once the stream has ended (`None` after an error).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    /// Stops generation; the stream ends at its next poll.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The token that cancels this stream (and only it).
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The next token, or `None` once the stream has ended.
    pub async fn next_token(&mut self) -> Option<Result<GeneratedToken>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Reads the stream to its end and returns the concatenated text.
    pub async fn collect_text(mut self) -> Result<String> {
        let mut text = String::new();
        while let Some(token) = self.next_token().await {
            text.push_str(&token?.text);
        }
        Ok(text)
    }

    fn end(&mut self, reason: Option<FinishReason>) {
        self.ended = true;
        self.finish_reason = reason;
        self.rx.close();
    }
}

impl Stream for TokenStream {
    type Item = Result<GeneratedToken>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.cancel.is_cancelled() {
            this.end(Some(FinishReason::Cancelled));
            return Poll::Ready(None);
        }
        match this.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Message::Token(token))) => {
                this.usage.completion_tokens = this.usage.completion_tokens.saturating_add(1);
                Poll::Ready(Some(Ok(token)))
            }
            Poll::Ready(Some(Message::Done { reason, usage })) => {
                if let Some(usage) = usage {
                    this.usage = usage;
                }
                this.end(Some(reason));
                Poll::Ready(None)
            }
            Poll::Ready(Some(Message::Failed(error))) => {
                this.end(None);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) if this.cancel.is_cancelled() => {
                this.end(Some(FinishReason::Cancelled));
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(Some(Err(Error::BackendStopped)))
            }
        }
    }
}

impl Drop for TokenStream {
    fn drop(&mut self) {
        // Wakes a producer blocked on a full channel so that it stops at once.
        self.cancel.cancel();
    }
}

impl TokenSink {
    /// Whether the consumer has cancelled or dropped the stream.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.tx.is_closed()
    }

    /// The stream's cancellation token, for producers that wait on something else.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Sends one token, waiting while the channel is full.
    pub async fn send(&self, token: GeneratedToken) -> Result<(), StreamClosed> {
        self.send_message(Message::Token(token)).await
    }

    /// Ends the stream normally; `usage` replaces the stream's own count when given.
    pub async fn finish(self, reason: FinishReason, usage: Option<Usage>) {
        // A consumer that is gone no longer needs the end.
        let _ = self.send_message(Message::Done { reason, usage }).await;
    }

    /// Ends the stream with an error.
    pub async fn fail(self, error: Error) {
        let _ = self.send_message(Message::Failed(error)).await;
    }

    /// [`send`](Self::send) for producers on a blocking thread (never call it from async code).
    pub fn blocking_send(&self, token: GeneratedToken) -> Result<(), StreamClosed> {
        futures::executor::block_on(self.send(token))
    }

    /// [`finish`](Self::finish) for producers on a blocking thread.
    pub fn blocking_finish(self, reason: FinishReason, usage: Option<Usage>) {
        futures::executor::block_on(self.finish(reason, usage));
    }

    /// [`fail`](Self::fail) for producers on a blocking thread.
    pub fn blocking_fail(self, error: Error) {
        futures::executor::block_on(self.fail(error));
    }

    async fn send_message(&self, message: Message) -> Result<(), StreamClosed> {
        match self.cancel.run_until_cancelled(self.tx.send(message)).await {
            Some(Ok(())) => Ok(()),
            Some(Err(_)) | None => Err(StreamClosed),
        }
    }
}
