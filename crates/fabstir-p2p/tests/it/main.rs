//! Integration tests of fabstir-p2p: real swarms on 127.0.0.1.

// Test helpers panic on anything unexpected.
#![allow(clippy::unwrap_used)]

mod discovery;
mod harness;
mod limits;
mod pool;
mod receipts;
mod stream;
mod transport;
