//! Integration tests of fabstir-payments on a real anvil chain: one binary, one module per
//! area. Transactions are counted by the sender's nonce; RPC calls by a counting proxy.

#![allow(unreachable_pub, clippy::unwrap_used)] // Test helpers: `pub` for sibling modules; panics are failures.

mod cache;
mod common;
mod concurrency;
mod paths;
mod sessions;
