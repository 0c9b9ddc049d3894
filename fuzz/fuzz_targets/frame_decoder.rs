//! Arbitrary bytes, split at arbitrary points, fed to `FrameDecoder<HostFrame>` and
//! `FrameDecoder<ClientFrame>`. The decoder must never panic, never hold more than one frame's
//! limit after it has been drained, and give the same messages however the bytes are split.
//!
//! Input layout: the first byte is the number of cuts (mod 16), then two bytes per cut (the
//! length of each chunk, little-endian), then the stream itself.

#![no_main]

use fabstir_core::wire::{
    ClientFrame, FRAME_HEADER_LEN, FrameDecoder, HostFrame, MAX_FRAME_LEN, WireMessage,
};
use libfuzzer_sys::fuzz_target;

/// What a decoder made of a stream: the messages, then either the error that ended it or the
/// bytes left over at the end (what is left after an error depends on the split, so it is not
/// kept).
#[derive(Debug, PartialEq)]
struct Outcome<T> {
    messages: Vec<T>,
    end: Result<usize, String>,
}

/// Feeds `stream` in `chunks` (lengths; the rest goes in one last chunk), draining the decoder
/// after each chunk as a transport reader would.
fn feed<T: WireMessage + std::fmt::Debug>(stream: &[u8], chunks: &[usize]) -> Outcome<T> {
    let limit = T::MAX_SIZE.min(MAX_FRAME_LEN);
    let mut decoder = FrameDecoder::<T>::new();
    let mut messages = Vec::new();
    let mut rest = stream;
    let mut pieces = chunks.iter().copied().chain(std::iter::once(usize::MAX));
    while !rest.is_empty() {
        let n = pieces.next().unwrap_or(usize::MAX).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        decoder.extend(chunk);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        end: Err(e.to_string()),
                    };
                }
            }
        }
        // Drained: at most one incomplete frame, whose announced length passed the limit.
        assert!(
            decoder.pending() < FRAME_HEADER_LEN + limit,
            "decoder holds {} bytes, limit {limit}",
            decoder.pending()
        );
    }
    Outcome {
        messages,
        end: Ok(decoder.pending()),
    }
}

fn check<T: WireMessage + PartialEq + std::fmt::Debug>(stream: &[u8], chunks: &[usize]) {
    let split = feed::<T>(stream, chunks);
    let whole = feed::<T>(stream, &[]);
    assert_eq!(
        split, whole,
        "splitting the stream changed what was decoded"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let cuts = usize::from(cuts % 16);
    let header = rest.len().min(cuts * 2);
    let (lengths, stream) = rest.split_at(header);
    let chunks: Vec<usize> = lengths
        .chunks_exact(2)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .collect();
    check::<HostFrame>(stream, &chunks);
    check::<ClientFrame>(stream, &chunks);
});
