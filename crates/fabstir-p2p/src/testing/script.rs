//! What a scripted [`TestHost`](super::TestHost) streams and how fast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fabstir_core::wire::{PromptFrame, StreamError, StreamErrorCode, StreamToken};
use sha2::{Digest, Sha256};

use crate::service::StreamSink;

/// Token `i` as a scripted host streams it: id `i`, text `"t{i} "`.
pub fn token(i: u64) -> StreamToken {
    StreamToken {
        id: u32::try_from(i % u64::from(u32::MAX)).unwrap_or_default(),
        text: format!("t{i} "),
    }
}

/// [`token`] `i` with its text padded to 1,000 bytes.
pub fn padded_token(i: u64) -> StreamToken {
    let mut t = token(i);
    t.text = format!("{:<1000}", t.text);
    t
}

/// What a scripted host streams for a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Script {
    /// What the prompt says: `count:N` streams N [`token`]s, `count:N:pad` N
    /// [`padded_token`]s, `count:N:gaps` N [`token`]s of which every odd one has empty text
    /// (padding that must earn nothing), `count:N:huge` N tokens of 2,000 bytes each (more
    /// than a token may carry: a hostile host), anything else streams until the client
    /// cancels.
    #[default]
    FromPrompt,
    /// This many [`token`]s, whatever the prompt.
    Tokens(u64),
}

/// What the tokens of a script look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Plain,
    Padded,
    Gaps,
    Huge,
}

impl Shape {
    fn token(self, i: u64) -> StreamToken {
        match self {
            Shape::Plain => token(i),
            Shape::Padded => padded_token(i),
            Shape::Huge => StreamToken {
                text: format!("{:<2000}", token(i).text),
                ..token(i)
            },
            Shape::Gaps if i % 2 == 1 => StreamToken {
                text: String::new(),
                ..token(i)
            },
            Shape::Gaps => token(i),
        }
    }
}

/// How fast a scripted host produces its tokens (the client's reading paces it too: the sink
/// is bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as the sink takes them.
    Free,
    /// Yields to the runtime after every this many tokens.
    YieldEvery(u64),
    /// Waits this long after each token, as slow hardware would.
    Delay(Duration),
    /// Produces this many tokens per second on average: token `i` goes out no earlier than
    /// `i / rate` seconds after the first (a steady engine; several per timer tick).
    Rate(u32),
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing::YieldEvery(64)
    }
}

impl Script {
    /// How many tokens to stream for `prompt`, and in which shape.
    /// How many tokens the script streams for `prompt` (`u64::MAX`: until cancelled).
    pub(super) fn planned(self, prompt: &PromptFrame) -> Result<u64, StreamError> {
        self.plan(prompt).map(|(limit, _)| limit)
    }

    fn plan(self, prompt: &PromptFrame) -> Result<(u64, Shape), StreamError> {
        match self {
            Script::Tokens(n) => Ok((n, Shape::Plain)),
            Script::FromPrompt => parse_prompt(&prompt.prompt),
        }
    }
}

impl Pacing {
    /// Paces after the `produced`-th token of a stream that began at `started`.
    async fn after(self, produced: u64, started: tokio::time::Instant) {
        match self {
            Pacing::Free => {}
            Pacing::YieldEvery(n) => {
                if n > 0 && produced.is_multiple_of(n) {
                    tokio::task::yield_now().await;
                }
            }
            Pacing::Delay(delay) => tokio::time::sleep(delay).await,
            Pacing::Rate(rate) => {
                let at = Duration::from_secs_f64(produced as f64 / f64::from(rate.max(1)));
                tokio::time::sleep_until(started + at).await;
            }
        }
    }
}

/// Streams what `script` says for `prompt` into `sink` at `pacing`, counting each token in
/// `produced`; returns how many went out and the sha2-256 digest of their text, or a
/// `Cancelled` error once the client left.
pub(super) async fn stream(
    script: Script,
    pacing: Pacing,
    prompt: &PromptFrame,
    sink: &StreamSink,
    produced: &AtomicU64,
) -> Result<(u64, [u8; 32]), StreamError> {
    stream_at_most(script, pacing, prompt, sink, produced, u64::MAX).await
}

/// [`stream`], stopping after `max` tokens (a session's budget).
pub(super) async fn stream_at_most(
    script: Script,
    pacing: Pacing,
    prompt: &PromptFrame,
    sink: &StreamSink,
    produced: &AtomicU64,
    max: u64,
) -> Result<(u64, [u8; 32]), StreamError> {
    let (limit, shape) = script.plan(prompt)?;
    let limit = limit.min(max);
    let mut text = Sha256::new();
    let mut i = 0;
    let started = tokio::time::Instant::now();
    while i < limit {
        let next = shape.token(i);
        text.update(next.text.as_bytes());
        if sink.send(next).await.is_err() {
            return Err(StreamError {
                code: StreamErrorCode::Cancelled,
                message: "client left".into(),
            });
        }
        produced.fetch_add(1, Ordering::SeqCst);
        i += 1;
        pacing.after(i, started).await;
    }
    Ok((i, text.finalize().into()))
}

/// `count:N` -> N plain tokens, `count:N:pad` -> N padded, `count:N:gaps` -> N with gaps,
/// anything else -> for ever.
fn parse_prompt(prompt: &str) -> Result<(u64, Shape), StreamError> {
    let mut parts = prompt.split(':');
    let limit = match (parts.next(), parts.next()) {
        (Some("count"), Some(n)) => n.parse::<u64>().map_err(|e| StreamError {
            code: StreamErrorCode::Malformed,
            message: format!("count {n}: {e}"),
        })?,
        _ => u64::MAX,
    };
    let shape = match parts.next() {
        Some("pad") => Shape::Padded,
        Some("gaps") => Shape::Gaps,
        Some("huge") => Shape::Huge,
        _ => Shape::Plain,
    };
    Ok((limit, shape))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::sync::mpsc;

    use super::*;

    fn prompt(text: &str) -> PromptFrame {
        PromptFrame {
            prompt: text.into(),
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 1,
        }
    }

    /// Streams `script` for `text` and collects the tokens.
    async fn run(
        script: Script,
        pacing: Pacing,
        text: &str,
        produced: &AtomicU64,
    ) -> (Result<u64, StreamError>, Vec<StreamToken>) {
        let (tx, mut rx) = mpsc::channel(16);
        let collect = tokio::spawn(async move {
            let mut tokens = Vec::new();
            while let Some(t) = rx.recv().await {
                tokens.push(t);
            }
            tokens
        });
        let sink = StreamSink::new(tx);
        let sent = stream(script, pacing, &prompt(text), &sink, produced).await;
        drop(sink);
        let tokens = collect.await.unwrap();
        // The digest is that of the text the client received.
        if let Ok((_, digest)) = &sent {
            let text: String = tokens.iter().map(|t| t.text.as_str()).collect();
            assert_eq!(<[u8; 32]>::from(Sha256::digest(text.as_bytes())), *digest);
        }
        (sent.map(|(count, _)| count), tokens)
    }

    #[tokio::test]
    async fn the_script_says_how_many_tokens() {
        let produced = AtomicU64::new(0);
        let pacing = Pacing::default();
        let (sent, tokens) = run(Script::FromPrompt, pacing, "count:5", &produced).await;
        assert_eq!(sent.unwrap(), 5);
        assert_eq!(tokens, (0..5).map(token).collect::<Vec<_>>());
        let (_, padded) = run(Script::FromPrompt, pacing, "count:2:pad", &produced).await;
        assert_eq!(padded, vec![padded_token(0), padded_token(1)]);
        assert_eq!(produced.load(Ordering::SeqCst), 7);
        let bad = run(Script::FromPrompt, pacing, "count:x", &produced).await;
        assert_eq!(bad.0.unwrap_err().code, StreamErrorCode::Malformed);

        let (sent, tokens) = run(Script::Tokens(3), pacing, "count:100", &produced).await;
        assert_eq!(sent.unwrap(), 3);
        assert_eq!(tokens.len(), 3);
    }

    #[tokio::test]
    async fn a_delay_paces_every_token() {
        let pacing = Pacing::Delay(Duration::from_millis(25));
        let start = Instant::now();
        let (sent, _) = run(Script::Tokens(4), pacing, "", &AtomicU64::new(0)).await;
        assert_eq!(sent.unwrap(), 4);
        assert!(start.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_rate_paces_the_stream_as_a_whole() {
        // 200 tokens at 2,000 per second: no earlier than 99.5 ms after the first.
        let start = Instant::now();
        let (sent, _) = run(
            Script::Tokens(200),
            Pacing::Rate(2_000),
            "",
            &AtomicU64::new(0),
        )
        .await;
        assert_eq!(sent.unwrap(), 200);
        assert!(start.elapsed() >= Duration::from_millis(99));
    }

    #[tokio::test]
    async fn a_client_that_left_ends_the_stream() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let produced = AtomicU64::new(0);
        let sink = StreamSink::new(tx);
        let forever = prompt("forever");
        let sent = stream(Script::FromPrompt, Pacing::Free, &forever, &sink, &produced).await;
        assert_eq!(sent.unwrap_err().code, StreamErrorCode::Cancelled);
        assert_eq!(produced.load(Ordering::SeqCst), 0);
    }
}
