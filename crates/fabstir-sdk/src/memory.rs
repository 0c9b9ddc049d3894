//! In-memory layers for unit tests of code built on the SDK (and of the SDK's own lifecycle
//! logic): a chain that keeps jobs and balances in maps with the marketplace's rules, and a
//! network of scripted hosts that claim, stream and settle on that chain, or misbehave on
//! purpose. Behind the `test-utils` feature. Each passes the same conformance suite as the
//! real layer (`crate::conformance`).

mod chain;
mod network;

pub use chain::{FEE_BPS, InMemoryChain};
pub use network::{HostBehaviour, InMemoryNetwork, ScriptedHost};
