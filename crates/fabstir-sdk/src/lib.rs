//! The headless Fabstir SDK: a thin facade that wires discovery (`fabstir-p2p`), payments
//! (`fabstir-payments`), contracts (`fabstir-contracts`) and storage (`fabstir-storage`) behind
//! traits and runs the job lifecycle for an application that owns its own signer.
//!
//! - [`FabstirSdk`] is built with no signer ([`FabstirSdk::set_signer`],
//!   [`FabstirSdk::clear_signer`], [`FabstirSdk::has_signer`]); read-only calls work without
//!   one, spending calls fail with [`Error::NoSigner`]. The SDK never writes a key anywhere.
//! - [`FabstirSdk::submit_job`] runs the seed's lifecycle (Negotiating -> Posted -> Claimed
//!   -> Processing -> Streaming -> Completed -> PaymentReleased, or Failed) and returns a
//!   [`JobHandle`] with the streamed text, the state and the result. A failed host costs the
//!   client nothing: its escrow is recovered (cancel or expire) and the next host is tried.
//! - [`FabstirSdk::open_session`] opens a [`Session`]: many prompts (and a chat) on one
//!   deposit with one host, no transaction per prompt, failover to another host with the
//!   conversation replayed.
//! - The layers sit behind [`ChainLayer`] and [`NetworkLayer`], traits over `fabstir-core`
//!   types; [`ChainClient`] and [`P2pNetwork`] are the real ones, `memory` (feature
//!   `test-utils`) the in-memory ones, and one conformance suite per trait runs over both.
//! - Code map: `sdk.rs` the facade, `lifecycle.rs` (and `lifecycle/attempt.rs`) the job
//!   lifecycle with failover, `recovery.rs` escrow recovery, `status.rs` status reports.
//! - The SDK owns its configuration ([`SdkConfig`], composing the layers' settings) and its
//!   events ([`SdkEvent`]).

mod chain;
mod config;
mod error;
mod events;
mod job;
mod lifecycle;
#[cfg(any(test, feature = "test-utils"))]
pub mod memory;
mod network;
mod ports;
mod recovery;
mod sdk;
#[cfg(test)]
mod sdk_tests;
mod session;
mod status;

pub use chain::ChainClient;
pub use config::{ENV_VARS, HeadlessConfig, SdkConfig, Timeouts};
pub use error::{Error, Result};
pub use events::SdkEvent;
pub use job::{JobHandle, JobRequest, JobResult};
pub use network::P2pNetwork;
pub use ports::{ChainLayer, NetworkLayer};
pub use sdk::FabstirSdk;
pub use session::{PromptReply, Session, SessionClosed, SessionRequest};
pub use status::JobStatusReport;

/// The payment layer's error, which [`Error::Payments`] carries (re-exported so that callers
/// can match on it without depending on `fabstir-payments`).
pub use fabstir_payments::Error as PaymentsError;

/// The wallet type the SDK signs with (re-exported so applications name the same version).
pub use ethers::signers::LocalWallet;
