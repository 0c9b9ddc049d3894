//! Stateless access to the Fabstir smart contracts (NodeRegistry, and JobMarketplace with the
//! escrowed funds it holds, for one-shot jobs and for sessions), any ERC-20 payment token (with EIP-2612 permit where it has it) and the
//! test tokens.
//!
//! This is the only layer besides `fabstir-payments` that talks to an Ethereum node. Its
//! [`HeadlessContractManager`] holds contract addresses and a read-only provider; every
//! state-changing call takes the signer for that call and keeps nothing of it. Reverts are
//! decoded into [`Error`] variants that name the cause ("job 7 already claimed by 0x.."),
//! marketplace events come back as typed [`MarketplaceEvent`]s, and [`deploy_local`] sets up
//! a complete local deployment. The [`anvil`] module runs a real local chain for tests; with the
//! `test-utils` feature, `testing` builds the one local-chain harness on it (deployment, named
//! funded accounts, the chain's clock, balances, conservation of funds).
//! [`ChainPeerRegistry`] implements the core `PeerRegistry` port over the NodeRegistry, for
//! the network layer of hosts and clients.
//!
//! It builds on the domain types of `fabstir-core` (`JobId`, `ModelId`, `JobDetails`,
//! `TokenAmount`, `Deployment`) and is used by `fabstir-payments`, `fabstir-sdk` and
//! `fabstir-node`. The Solidity sources are in `contracts/`; the bindings in [`bindings`] are
//! generated from the committed artifacts in `contracts-abi/` (`cargo xtask contracts`).

pub mod anvil;
pub mod bindings;
mod convert;
mod deploy;
mod error;
mod events;
mod jobs;
mod manager;
mod peer_registry;
mod registry;
mod session_view;
mod sessions;
mod terms;
#[cfg(feature = "test-utils")]
pub mod testing;
mod tokens;
mod types;
mod wallets;

pub use deploy::{LOCAL_RULES, LocalDeployConfig, deploy_local};
pub use error::{Error, Result};
pub use events::{LoggedEvent, MarketplaceEvent};
pub use manager::{HeadlessContractManager, ManagerConfig, WalletSigner};
pub use peer_registry::ChainPeerRegistry;
pub use session_view::session_terms_hash;
pub use terms::{posted_block, terms_hash};
pub use types::{
    ClosedSession, JobStatus, NodeRegistration, OnChainJob, OpenedSession, PartialSettlement,
    PostedJob, RegisteredNode, Settlement, TxInfo,
};

/// The ethers types this crate's API uses, re-exported so callers name the same versions.
pub mod eth {
    pub use ethers::middleware::SignerMiddleware;
    pub use ethers::providers::{Http, Middleware, Provider};
    pub use ethers::signers::{LocalWallet, Signer};
    pub use ethers::types::{Address, Bytes, H256, Signature, U256};
}
