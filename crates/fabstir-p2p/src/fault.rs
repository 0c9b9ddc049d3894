//! Deliberate protocol faults a host can be told to commit on its token streams, so that
//! clients' handling of broken hosts can be tested against a real node (feature
//! `fault-injection`; never enable it in a production build).
//!
//! A fault is set per [`Network`](crate::Network) with
//! [`Network::inject_stream_fault`](crate::Network::inject_stream_fault) and applies to every
//! stream that node serves from then on, until it is cleared.

use std::sync::atomic::{AtomicU8, Ordering};

/// What a faulty host does on its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamFault {
    /// Instead of its next token batch the host writes a frame whose payload no message
    /// decodes from (a header announcing 5 bytes, then five `0xff`), then ends the stream and
    /// stops producing, as a host with a broken encoder would.
    GarbageFrame,
    /// The host accepts the prompt and then sends nothing at all (no token, no final frame),
    /// holding the stream open until the client gives up; then it settles with what it holds
    /// (no receipt): a host that claims jobs and never streams.
    Silent,
}

/// The bytes [`StreamFault::GarbageFrame`] writes: a valid header, an undecodable payload.
pub(crate) const GARBAGE_FRAME: [u8; 9] = [0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff];

/// The fault a node's streams commit now, shared by its [`Network`](crate::Network) handles
/// and its stream server.
#[derive(Debug, Default)]
pub(crate) struct FaultSlot(AtomicU8);

impl FaultSlot {
    const NONE: u8 = 0;
    const GARBAGE_FRAME: u8 = 1;
    const SILENT: u8 = 2;

    pub(crate) fn set(&self, fault: Option<StreamFault>) {
        let code = match fault {
            None => Self::NONE,
            Some(StreamFault::GarbageFrame) => Self::GARBAGE_FRAME,
            Some(StreamFault::Silent) => Self::SILENT,
        };
        self.0.store(code, Ordering::SeqCst);
    }

    pub(crate) fn get(&self) -> Option<StreamFault> {
        match self.0.load(Ordering::SeqCst) {
            Self::GARBAGE_FRAME => Some(StreamFault::GarbageFrame),
            Self::SILENT => Some(StreamFault::Silent),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use fabstir_core::wire::{self, HostFrame};

    use super::*;

    #[test]
    fn the_slot_holds_what_was_set() {
        let slot = FaultSlot::default();
        assert_eq!(slot.get(), None);
        slot.set(Some(StreamFault::GarbageFrame));
        assert_eq!(slot.get(), Some(StreamFault::GarbageFrame));
        slot.set(Some(StreamFault::Silent));
        assert_eq!(slot.get(), Some(StreamFault::Silent));
        slot.set(None);
        assert_eq!(slot.get(), None);
    }

    #[test]
    fn the_garbage_frame_has_a_valid_header_and_does_not_decode() {
        let header = [
            GARBAGE_FRAME[0],
            GARBAGE_FRAME[1],
            GARBAGE_FRAME[2],
            GARBAGE_FRAME[3],
        ];
        let len = wire::frame_len(header, wire::MAX_FRAME_LEN).unwrap();
        assert_eq!(len, GARBAGE_FRAME.len() - wire::FRAME_HEADER_LEN);
        assert!(wire::decode::<HostFrame>(&GARBAGE_FRAME[4..]).is_err());
    }
}
