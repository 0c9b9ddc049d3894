//! Payment routing for Fabstir jobs and sessions: the seed's `FabstirLLMSDK.submitJob` path
//! in its own crate, usable without the rest of the SDK. A session's deposit
//! ([`PaymentManager::open_session`]) takes the same paths as a job's escrow.
//!
//! - ETH: `postJob{value}`, one transaction.
//! - ERC-20: balance check -> allowance check -> approve only when needed (one approval in
//!   flight per owner and token; zero-first for tokens that require it) -> `postJobWithToken`.
//! - ERC-20 with EIP-2612 permit: the permit is signed off chain and the post is one
//!   transaction, with no separate approval.
//!
//! Everything that can be known before a transaction is sent is checked first: a token that
//! is not accepted, an amount with too many decimals, an insufficient balance ("need 1.50
//! USDC, have 0.20 USDC"). [`PaymentManager`] takes the signer per call like the contract
//! manager under it and keeps nothing of it; it keeps only caches (balances per block,
//! allowances until changed, token metadata for ever) and per-address nonce counters, so
//! parallel submissions from one signer do not collide. Amounts are `fabstir_core`
//! [`TokenAmount`](fabstir_core::TokenAmount)s: no floating point anywhere.

mod allowance;
mod cache;
mod error;
mod escrow;
mod manager;
mod nonce;
mod registry;
mod routing;

pub use allowance::ApprovalPolicy;
pub use error::{Error, Result};
pub use manager::{PaymentConfig, PaymentManager};
pub use nonce::{NonceBook, SharedNonce};
pub use registry::{TokenEntry, TokenRegistry};
pub use routing::{JobPayment, PaymentMethod, SessionSubmission, Submission};
