//! `/fabstir/stream/1.0.0`: the authenticated token stream. The host's side
//! ([`host`]) issues a challenge, checks the client's signed answer with its
//! [`HostService`](crate::HostService), reads the prompt and streams token batches and a
//! signed final frame; the client's side ([`client`]) answers the challenge, sends the prompt
//! and reads the batches as a [`ClientStream`]. The frames are specified in
//! `docs/PROTOCOL.md`.

pub(crate) mod client;
mod credit;
pub(crate) mod host;

pub use client::{ClientStream, Events, SessionStream};
/// What a client receives on a token stream or a session prompt's (the core port types).
pub use fabstir_core::{SessionEvent, StreamEvent};
