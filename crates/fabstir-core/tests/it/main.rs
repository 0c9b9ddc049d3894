//! Integration tests of `fabstir-core` through its public API only: the pieces upper layers
//! combine (wire messages, signatures, amounts, the state machine) used together as a host and
//! a client would.

#![allow(clippy::unwrap_used)] // Panics in tests are test failures.

mod handshake;
