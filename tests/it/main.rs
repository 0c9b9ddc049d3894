//! End-to-end tests across the Fabstir crates: a real anvil, real host nodes on 127.0.0.1,
//! the SDK as a client. One integration binary for the whole suite.

#![allow(unreachable_pub, clippy::unwrap_used)] // Test helpers: `pub` for sibling modules; panics are failures.

mod common;
mod failover;
mod faults;
mod flow;
mod headless;
mod hostile;
mod interop;
mod sessions;
mod workspace;
