//! Reading and writing length-prefixed wire frames on byte streams, with the size limit
//! checked before anything is allocated.

use fabstir_core::wire::{self, FRAME_HEADER_LEN, MAX_FRAME_LEN, WireMessage};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Error, Result};

/// Reads one frame of `T`: `Ok(None)` on a clean end of stream before a header, an error for
/// a truncated, oversized or malformed frame.
pub(crate) async fn read_frame<T: WireMessage, R: AsyncRead + Unpin>(
    io: &mut R,
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
    let len = wire::frame_len(header, T::MAX_SIZE.clamp(1, MAX_FRAME_LEN))?;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::Truncated(format!("frame of {len} bytes")),
            _ => Error::Io(e),
        })?;
    Ok(Some(wire::decode(&payload)?))
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

/// Writes one message as a frame (length prefix and payload) and flushes.
pub(crate) async fn write_frame<T: WireMessage, W: AsyncWrite + Unpin>(
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
