//! Integration tests of the host node: a real anvil chain with the contracts deployed, host
//! nodes serving the embedded `stories260K` model, and a plain test client built from the lower
//! crates (contracts, p2p, storage) that posts jobs, streams them and checks the settlement.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod common;
mod failure;
mod lifecycle;
mod receipts;
mod refusals;
mod restart;
mod sessions;
