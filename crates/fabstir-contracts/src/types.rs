//! Plain Rust views of what the contracts store and return.

use ethers::types::{H256, U256};
use fabstir_core::{JobId, NodeInfo, NodePeerId, TokenAmount, TokenPrice};

pub use fabstir_core::market::{JobStatus, OnChainJob};
use serde::{Deserialize, Serialize};

/// What a host registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// The host's libp2p peer id (multihash bytes).
    pub peer_id: NodePeerId,
    /// Models served.
    pub models: Vec<fabstir_core::ModelId>,
    /// Price per token for each accepted payment token.
    pub prices: Vec<TokenPrice>,
    /// Free-form metadata (e.g. JSON).
    pub metadata: String,
    /// FAB to stake, in base units (at least the registry's minimum).
    pub stake: TokenAmount,
}

/// A node as stored by the NodeRegistry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredNode {
    /// Address, peer id, models, prices, metadata, stake and whether it is active.
    pub info: NodeInfo,
    /// When an unregistered node's stake unlocks (unix seconds); `None` while active.
    pub unbonding_end: Option<u64>,
}

/// What a mined transaction cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInfo {
    /// Transaction hash.
    pub hash: H256,
    /// Block it was mined in.
    pub block: u64,
    /// Gas used.
    pub gas_used: U256,
    /// Price paid per unit of gas, in wei.
    pub effective_gas_price: U256,
}

impl TxInfo {
    /// What the sender paid for gas, in wei.
    pub fn fee_wei(&self) -> U256 {
        self.gas_used * self.effective_gas_price
    }
}

/// The result of posting a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedJob {
    /// The new job's id.
    pub job: JobId,
    /// The posting transaction (for the permit path, the only one).
    pub tx: TxInfo,
}

/// How a completed job was settled (from its JobCompleted event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The job.
    pub job: JobId,
    /// Tokens the client's receipt counts (what was paid for).
    pub tokens_used: U256,
    /// The receipt's transcript hash.
    pub transcript: H256,
    /// Paid to the host, after the fee.
    pub paid: TokenAmount,
    /// Paid to the treasury.
    pub fee: TokenAmount,
    /// Returned to the client.
    pub refund: TokenAmount,
    /// The submitting transaction.
    pub tx: TxInfo,
}

/// The result of opening a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedSession {
    /// The new session's id.
    pub session: fabstir_core::SessionId,
    /// The opening transaction (with the deposit).
    pub tx: TxInfo,
}

/// A partial settlement of a session (its SessionSettled event): what this settlement paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialSettlement {
    /// The session.
    pub session: fabstir_core::SessionId,
    /// Tokens receipted in all so far (now settled).
    pub tokens: u64,
    /// Paid to the host by this settlement, after the fee.
    pub paid: TokenAmount,
    /// The fee of this settlement.
    pub fee: TokenAmount,
    /// The settling transaction.
    pub tx: TxInfo,
}

/// A session the host closed: the whole session's split and the closing transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedSession {
    /// Tokens, transcript, what the host and the treasury got over the session, the refund.
    pub settlement: fabstir_core::SessionSettlement,
    /// The closing transaction.
    pub tx: TxInfo,
}
