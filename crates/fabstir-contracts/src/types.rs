//! Plain Rust views of what the contracts store and return.

use std::fmt;

use ethers::types::{Address, H256, U256};
use fabstir_core::{JobDetails, JobId, NodeInfo, NodePeerId, TokenAmount, TokenPrice};
use serde::{Deserialize, Serialize};

/// A job's status on chain (the contract's `JobStatus` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// No such job.
    None,
    /// Posted with its escrow, waiting for a host.
    Posted,
    /// Claimed by a host, result not yet submitted.
    Claimed,
    /// Result submitted and escrow settled.
    Completed,
    /// Cancelled by the client before a claim; refunded.
    Cancelled,
    /// Expired after the deadline; refunded.
    Expired,
    /// Given up by the claiming host; refunded.
    Released,
    /// A value this version does not know.
    Unknown(u8),
}

impl JobStatus {
    /// Converts the contract's `uint8` status.
    pub fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::None,
            1 => Self::Posted,
            2 => Self::Claimed,
            3 => Self::Completed,
            4 => Self::Cancelled,
            5 => Self::Expired,
            6 => Self::Released,
            other => Self::Unknown(other),
        }
    }

    /// Whether the job still holds funds in escrow (posted or claimed).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Posted | Self::Claimed)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("not found"),
            Self::Posted => f.write_str("posted"),
            Self::Claimed => f.write_str("claimed"),
            Self::Completed => f.write_str("completed"),
            Self::Cancelled => f.write_str("cancelled"),
            Self::Expired => f.write_str("expired"),
            Self::Released => f.write_str("released"),
            Self::Unknown(v) => write!(f, "in unknown status {v}"),
        }
    }
}

/// A job as stored by the JobMarketplace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainJob {
    /// The job's id.
    pub id: JobId,
    /// Who posted and paid for it.
    pub client: Address,
    /// The assigned host before a claim, the claiming host after; `None` for an open job
    /// nobody has claimed.
    pub host: Option<Address>,
    /// The payment token (the zero address is ETH).
    pub token: Address,
    /// The escrowed amount, in the token's base units.
    pub amount: TokenAmount,
    /// Model, prompt hash, max tokens, price and deadline.
    pub details: JobDetails,
    /// Where the job is.
    pub status: JobStatus,
}

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
    /// Tokens the host reported.
    pub tokens_used: U256,
    /// Paid to the host, after the fee.
    pub paid: TokenAmount,
    /// Paid to the treasury.
    pub fee: TokenAmount,
    /// Returned to the client.
    pub refund: TokenAmount,
    /// The submitting transaction.
    pub tx: TxInfo,
}
