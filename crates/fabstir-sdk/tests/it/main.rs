//! Integration tests of `fabstir-sdk`: the conformance suites of its layer traits, run over
//! the in-memory layers and the real ones (an anvil chain, a libp2p network), so that a double
//! that disagrees with the real layer fails a test.

#![allow(clippy::unwrap_used)] // Panics in tests are test failures.

mod conformance;
