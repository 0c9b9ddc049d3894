//! The marketplace as the chain records it, in domain types: a job's on-chain status and
//! record, the payment that funds it, and how it ended (settled with a result, or refunded).
//! The contracts layer decodes the chain into these; the SDK's chain port speaks them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::cid::Cid;
use crate::primitives::{Address, H256};
use crate::{Error, JobDetails, JobId, PaymentToken, Result, TokenAmount};

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
    /// Claimed, and the client asked to close: the host may settle until the job's deadline
    /// (now the end of the close window), then anyone may expire it.
    Closing,
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
            7 => Self::Closing,
            other => Self::Unknown(other),
        }
    }

    /// Whether the job still holds funds in escrow (posted, claimed or closing).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Posted | Self::Claimed | Self::Closing)
    }

    /// Whether a host holds the job (claimed or closing): it may settle, release, or be
    /// expired at the end of its time.
    pub fn is_claimed(self) -> bool {
        matches!(self, Self::Claimed | Self::Closing)
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
            Self::Closing => f.write_str("closing"),
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
    /// The protocol fee in basis points, fixed when the job was posted.
    pub fee_bps: u16,
}

impl OnChainJob {
    /// The last second (unix time) at which the job may be settled, after which anyone may
    /// expire it, under `rules`.
    pub fn settle_by(&self, rules: &MarketRules) -> u64 {
        rules.settle_by(self.status, self.details.deadline)
    }
}

/// The marketplace's time rules, fixed when it was deployed (the contract's immutables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketRules {
    /// Shortest time from posting to a job's deadline, in seconds.
    pub min_job_duration: u64,
    /// Seconds after its deadline during which a claimed job may still be settled and cannot
    /// be expired.
    pub submit_grace: u64,
    /// Seconds a host has to settle after the client asked to close.
    pub close_window: u64,
}

impl MarketRules {
    /// The last second a job in `status` with `deadline` may be settled: a claimed job's
    /// deadline plus the grace period; otherwise the deadline (a closing job's deadline is the
    /// end of its close window).
    pub fn settle_by(&self, status: JobStatus, deadline: u64) -> u64 {
        match status {
            JobStatus::Claimed => deadline.saturating_add(self.submit_grace),
            _ => deadline,
        }
    }
}

/// What a job pays: how much of which token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPayment {
    /// The payment token.
    pub token: PaymentToken,
    /// The escrow, in base units.
    pub amount: TokenAmount,
}

impl JobPayment {
    /// A payment of a human amount (`"1.5"`) of `token`; too many decimals is an error.
    pub fn parse(token: PaymentToken, amount: &str) -> Result<Self> {
        let amount = token.parse_amount(amount)?;
        Ok(Self { token, amount })
    }

    /// The escrow a job needs at its own terms: `max_tokens x price_per_token`.
    pub fn for_job(token: PaymentToken, details: &JobDetails) -> Result<Self> {
        let amount = details.escrow_amount().ok_or(Error::EscrowOverflow)?;
        Ok(Self { token, amount })
    }
}

/// How a settled job's escrow was split (from its `JobCompleted` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettlement {
    /// The host that ran it.
    pub host: Address,
    /// The result CID the host submitted; `None` when the bytes it submitted are not a CID
    /// (a host that lied: no client's check can match them).
    pub result_cid: Option<Cid>,
    /// The transcript hash of the client's receipt it settled with.
    pub transcript: H256,
    /// Tokens the client's receipt counts (what was paid for).
    pub tokens_used: u64,
    /// Paid to the host, after the fee.
    pub paid: TokenAmount,
    /// Paid to the treasury.
    pub fee: TokenAmount,
    /// Returned to the client.
    pub refund: TokenAmount,
}

/// Why a job's escrow went back to its client without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundReason {
    /// The client cancelled it before a claim.
    Cancelled,
    /// It passed its deadline unfinished.
    Expired,
    /// The claiming host gave it up.
    Released,
}

/// How a job that holds no more funds ended.
#[derive(Debug, Clone, PartialEq, Eq)]
// A settlement (with its CID) is a few hundred bytes, read once per finished job: boxing it
// would cost every reader an indirection for no memory that matters.
#[allow(clippy::large_enum_variant)]
pub enum JobOutcome {
    /// The host submitted a result and was paid.
    Settled(JobSettlement),
    /// The escrow was refunded.
    Refunded {
        /// Why.
        reason: RefundReason,
        /// The refunded amount.
        amount: TokenAmount,
    },
}
