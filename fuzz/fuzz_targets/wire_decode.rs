//! Arbitrary bytes into `wire::decode::<T>` for every wire message type. Decoding must never
//! panic, and a message that decodes must encode again and decode to the same value.

#![no_main]

use fabstir_core::wire::{
    self, CapabilitiesRequest, CapabilitiesResponse, ClientFrame, HostFrame, NegotiationRequest,
    NegotiationResponse, WireMessage,
};
use libfuzzer_sys::fuzz_target;

fn check<T: WireMessage + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    let Ok(message) = wire::decode::<T>(bytes) else {
        return;
    };
    // bincode accepts non-minimal varints, so the bytes may differ; the value may not.
    let encoded = match wire::encode(&message) {
        Ok(encoded) => encoded,
        Err(e) => panic!("decoded {message:?} but cannot encode it again: {e}"),
    };
    assert!(
        encoded.len() <= T::MAX_SIZE,
        "re-encoding of {message:?} exceeds the limit"
    );
    match wire::decode::<T>(&encoded) {
        Ok(again) => assert_eq!(again, message, "round trip changed the value"),
        Err(e) => panic!("re-encoded {message:?} does not decode: {e}"),
    }
    // The same message as a stream frame decodes to the same value as well.
    if let Ok(frame) = wire::encode_frame(&message) {
        let mut decoder = wire::FrameDecoder::<T>::new();
        decoder.extend(&frame);
        if T::MAX_SIZE <= wire::MAX_FRAME_LEN {
            match decoder.next_message() {
                Ok(Some(again)) => assert_eq!(again, message, "frame round trip changed the value"),
                other => panic!("frame of {message:?} does not decode: {other:?}"),
            }
            assert_eq!(decoder.pending(), 0);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check::<CapabilitiesRequest>(data);
    check::<CapabilitiesResponse>(data);
    check::<NegotiationRequest>(data);
    check::<NegotiationResponse>(data);
    check::<ClientFrame>(data);
    check::<HostFrame>(data);
});
