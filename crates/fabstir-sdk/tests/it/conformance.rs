//! One suite per layer trait. Each suite is a set of `async fn`s over a fixture trait; every
//! implementation (in memory, real) provides a fixture and runs every check.

pub(crate) mod chain;
mod chain_anvil;
mod chain_memory;
pub(crate) mod network;
mod network_libp2p;
mod network_memory;
pub(crate) mod sessions;
