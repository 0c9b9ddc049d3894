//! Reading and writing length-prefixed wire frames on byte streams, with the size limit
//! checked before anything is allocated.

use std::time::Duration;

use fabstir_core::wire::{
    self, FRAME_HEADER_LEN, MAX_FRAME_LEN, MAX_HANDSHAKE_FRAME_LEN, WireMessage,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

/// Reads one frame of `T`: `Ok(None)` on a clean end of stream before a header, an error for
/// a truncated, oversized or malformed frame.
pub(crate) async fn read_frame<T: WireMessage, R: AsyncRead + Unpin>(
    io: &mut R,
) -> Result<Option<T>> {
    read_frame_limited(io, T::MAX_SIZE.clamp(1, MAX_FRAME_LEN)).await
}

/// [`read_frame`] refusing a payload longer than `limit` (checked on the header, before the
/// payload is allocated).
async fn read_frame_limited<T: WireMessage, R: AsyncRead + Unpin>(
    io: &mut R,
    limit: usize,
) -> Result<Option<T>> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        let n = io.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(Error::Truncated(format!(
                    "{filled} of {FRAME_HEADER_LEN} header bytes"
                )))
            };
        }
        filled += n;
    }
    let len = wire::frame_len(header, limit.min(T::MAX_SIZE).max(1))?;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Truncated(format!("frame of {len} bytes")),
            _ => Error::Io(e),
        })?;
    Ok(Some(wire::decode(&payload)?))
}

/// [`read_frame`] within `timeout`; a frame that does not come in time is
/// [`Error::Timeout`] naming `what`.
pub(crate) async fn read_frame_within<T: WireMessage, R: AsyncRead + Unpin>(
    io: &mut R,
    timeout: Duration,
    what: &'static str,
) -> Result<Option<T>> {
    tokio::time::timeout(timeout, read_frame(io))
        .await
        .map_err(|_| Error::Timeout {
            what,
            after: timeout,
        })?
}

/// [`read_frame_within`] for a frame of the handshake, before the stream is authenticated:
/// at most [`MAX_HANDSHAKE_FRAME_LEN`] bytes.
pub(crate) async fn read_handshake_frame_within<T: WireMessage, R: AsyncRead + Unpin>(
    io: &mut R,
    timeout: Duration,
    what: &'static str,
) -> Result<Option<T>> {
    tokio::time::timeout(timeout, read_frame_limited(io, MAX_HANDSHAKE_FRAME_LEN))
        .await
        .map_err(|_| Error::Timeout {
            what,
            after: timeout,
        })?
}

/// Like [`read_frame`], with a limit other than [`MAX_FRAME_LEN`] (for request-response
/// messages bigger than a stream frame).
pub(crate) async fn read_message<T: WireMessage, R: AsyncRead + Unpin>(io: &mut R) -> Result<T> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    io.read_exact(&mut header).await?;
    let len = wire::frame_len(header, T::MAX_SIZE)?;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(wire::decode(&payload)?)
}

/// How long a peer may take to accept one frame written to it (or the end of a stream)
/// before it is treated as gone: a peer that stops reading cannot hold a writer.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes one message as a frame (length prefix and payload) and flushes, within
/// [`WRITE_TIMEOUT`].
pub(crate) async fn write_frame<T: WireMessage, W: AsyncWrite + Unpin>(
    io: &mut W,
    message: &T,
) -> Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, write_frame_now(io, message))
        .await
        .map_err(|_| Error::Timeout {
            what: "writing a frame",
            after: WRITE_TIMEOUT,
        })?
}

/// Closes the writing side of a stream within [`WRITE_TIMEOUT`].
pub(crate) async fn close<W: AsyncWrite + Unpin>(io: &mut W) -> Result<()> {
    tokio::time::timeout(WRITE_TIMEOUT, io.close())
        .await
        .map_err(|_| Error::Timeout {
            what: "closing a stream",
            after: WRITE_TIMEOUT,
        })?
        .map_err(Error::Io)
}

async fn write_frame_now<T: WireMessage, W: AsyncWrite + Unpin>(
    io: &mut W,
    message: &T,
) -> Result<()> {
    let payload = wire::encode(message)?;
    let len = u32::try_from(payload.len()).map_err(|_| {
        Error::Wire(fabstir_core::Error::Oversized {
            len: payload.len(),
            limit: T::MAX_SIZE,
        })
    })?;
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&payload);
    io.write_all(&frame).await?;
    io.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use fabstir_core::wire::{ClientFrame, HostFrame};
    use futures::io::Cursor;

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_errors() {
        let mut buf = Cursor::new(Vec::new());
        write_frame(&mut buf, &ClientFrame::Cancel).await.unwrap();
        write_frame(&mut buf, &HostFrame::Authenticated)
            .await
            .unwrap();
        let bytes = buf.into_inner();
        let mut r = Cursor::new(bytes.clone());
        assert_eq!(
            read_frame::<ClientFrame, _>(&mut r).await.unwrap(),
            Some(ClientFrame::Cancel)
        );
        assert_eq!(
            read_frame::<HostFrame, _>(&mut r).await.unwrap(),
            Some(HostFrame::Authenticated)
        );
        assert_eq!(read_frame::<HostFrame, _>(&mut r).await.unwrap(), None);
        // Truncated header and payload.
        let mut r = Cursor::new(bytes[..2].to_vec());
        assert!(matches!(
            read_frame::<ClientFrame, _>(&mut r).await,
            Err(Error::Truncated(_))
        ));
        let mut r = Cursor::new(bytes[..5].to_vec());
        assert!(matches!(
            read_frame::<ClientFrame, _>(&mut r).await,
            Err(Error::Truncated(_))
        ));
        // Oversized announcement and garbage payload.
        let mut r = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            read_frame::<ClientFrame, _>(&mut r).await,
            Err(Error::Wire(_))
        ));
        let mut r = Cursor::new(vec![0, 0, 0, 3, 9, 9, 9]);
        assert!(matches!(
            read_frame::<ClientFrame, _>(&mut r).await,
            Err(Error::Wire(_))
        ));
    }
}

/// The async reader against the fuzzed incremental decoder of `fabstir-core`: whatever the
/// bytes and however the transport splits them, both read the same messages and both end
/// cleanly or with an error at the same place.
#[cfg(test)]
mod properties {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use fabstir_core::wire::{
        FrameDecoder, HostFrame, StreamError, StreamErrorCode, StreamToken, TokenBatch,
        encode_frame,
    };
    use futures::AsyncRead;
    use proptest::prelude::*;

    use super::read_frame;

    /// A transport that hands out its bytes in the given chunk sizes (cycled).
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        reads: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let size = this.sizes[this.reads % this.sizes.len()].max(1);
            this.reads += 1;
            let n = size.min(buf.len()).min(this.data.len() - this.pos);
            buf[..n].copy_from_slice(&this.data[this.pos..this.pos + n]);
            this.pos += n;
            Poll::Ready(Ok(n))
        }
    }

    /// The messages read, and whether the stream ended cleanly.
    fn with_decoder(bytes: &[u8]) -> (Vec<HostFrame>, bool) {
        let mut decoder = FrameDecoder::<HostFrame>::new();
        decoder.extend(bytes);
        let mut messages = Vec::new();
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(message),
                // Bytes left over at the end are a truncated frame.
                Ok(None) => return (messages, decoder.pending() == 0),
                Err(_) => return (messages, false),
            }
        }
    }

    fn with_reader(bytes: &[u8], sizes: Vec<usize>) -> (Vec<HostFrame>, bool) {
        let mut io = Chunked {
            data: bytes.to_vec(),
            pos: 0,
            sizes,
            reads: 0,
        };
        let mut messages = Vec::new();
        futures::executor::block_on(async {
            loop {
                match read_frame::<HostFrame, _>(&mut io).await {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => return (messages, true),
                    Err(_) => return (messages, false),
                }
            }
        })
    }

    fn frame() -> impl Strategy<Value = Vec<u8>> {
        let message = prop_oneof![
            Just(HostFrame::Authenticated),
            (
                any::<u64>(),
                prop::collection::vec((any::<u32>(), ".{0,8}"), 0..6)
            )
                .prop_map(|(first_index, tokens)| HostFrame::Tokens(TokenBatch {
                    first_index,
                    tokens: tokens
                        .into_iter()
                        .map(|(id, text)| StreamToken { id, text })
                        .collect(),
                })),
            ".{0,40}".prop_map(|message| HostFrame::Error(StreamError {
                code: StreamErrorCode::Malformed,
                message,
            })),
        ];
        prop_oneof![
            3 => message.prop_map(|m| encode_frame(&m).expect("encodes")),
            // Garbage, including headers announcing any length.
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest! {
        #[test]
        fn the_async_reader_agrees_with_the_incremental_decoder(
            parts in prop::collection::vec(frame(), 0..8),
            cut in prop::collection::vec(0usize..40, 1..8),
            drop_tail in 0usize..3,
        ) {
            let mut bytes: Vec<u8> = parts.concat();
            // Sometimes the stream ends mid-frame.
            bytes.truncate(bytes.len().saturating_sub(drop_tail));
            prop_assert_eq!(with_reader(&bytes, cut), with_decoder(&bytes));
        }
    }
}
