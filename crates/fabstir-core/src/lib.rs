//! Domain types of the Fabstir LLM marketplace, shared by every other crate.
//!
//! This is the bottom layer: ids ([`JobId`], [`ModelId`], [`HostAddress`], [`NodePeerId`]),
//! the job model ([`JobDetails`], [`JobRequirements`], the [`JobState`] machine), sessions
//! (payment channels of many prompts: [`SessionDetails`], [`OnChainSession`], [`SessionSplit`]), node
//! descriptions ([`NodeCapabilities`], [`NodeInfo`], [`DiscoveredNode`]), payment tokens and
//! exact amounts ([`PaymentToken`], [`TokenAmount`]), node ranking ([`ranking`]), the
//! addresses of a deployment ([`Deployment`]), the versioned P2P wire protocol ([`wire`]) with
//! the messages its signatures cover ([`auth`]), and the ports that layers implement for each
//! other ([`PeerRegistry`]). Configuration files are read through [`config`]; each layer owns
//! its configuration type.
//!
//! It knows nothing of tokio, libp2p or any RPC client: only plain Ethereum primitives
//! (`Address`, `U256`, `H256`, signatures) from `ethers-core`, re-exported as [`primitives`] so
//! that upper layers agree on one version.

pub mod amount;
pub mod auth;
pub mod cid;
pub mod clock;
pub mod config;
pub mod deployment;
mod error;
pub mod ids;
pub mod job;
pub mod market;
pub mod node;
pub mod ranking;
pub mod receipt;
pub mod registry;
pub mod session;
pub mod stream;
pub mod token;
pub mod wire;

pub use amount::TokenAmount;
pub use deployment::{ContractAddresses, Deployment};
pub use error::{Error, Result};
pub use ids::{HostAddress, JobId, ModelId, NodePeerId};
pub use job::{JobDetails, JobRequirements, JobState};
pub use market::{
    JobOutcome, JobPayment, JobSettlement, JobStatus, MarketRules, OnChainJob, RefundReason,
};
pub use node::{
    DiscoveredNode, NodeCapabilities, NodeInfo, ProviderQuery, ScoreWeights, SelectionCriteria,
    TokenPrice,
};
pub use ranking::{ScoredNode, rank, rank_scored, select_optimal};
pub use registry::{InMemoryRegistry, PeerRegistry, RegistryError};
pub use session::{
    OnChainSession, SessionDetails, SessionId, SessionSettlement, SessionSplit, SessionStatus,
};
pub use stream::{PromptEnd, SessionEvent, StreamEvent};
pub use token::PaymentToken;

/// Ethereum primitives used across the workspace, re-exported from `ethers-core` so that every
/// layer names the same types.
pub mod primitives {
    pub use ethers_core::types::{Address, H256, Signature, U256};
    pub use ethers_core::utils::keccak256;
}
