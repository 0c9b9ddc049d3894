//! One error type for the crate: contract reverts decoded into named causes carrying the
//! values a user needs ("job 7 already claimed by 0x.."), plus transport and data errors.

use ethers::contract::{ContractError, ContractRevert};
use ethers::providers::Middleware;
use ethers::types::{Address, H256, U256};
use fabstir_core::{JobId, ModelId};

use crate::bindings::{erc20, job_marketplace, node_registry};
use crate::types::JobStatus;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the Fabstir contracts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- JobMarketplace -----
    /// The payment token is not on the marketplace's accepted list.
    #[error("token {0:#x} is not accepted for payment")]
    TokenNotAccepted(Address),
    /// A job's price per token must be above zero.
    #[error("a job's price per token must be above zero")]
    ZeroPrice,
    /// A job's escrow must be exactly its maximum tokens times its price per token.
    #[error("the escrow must be exactly {expected} (max tokens x price), not {amount}")]
    WrongAmount {
        /// `max_tokens * price_per_token`.
        expected: U256,
        /// The amount offered.
        amount: U256,
    },
    /// The job names a host whose registered price in the payment token is higher (zero: the
    /// host does not take the token).
    #[error("host {host:#x} asks {host_price} per token, the job offers {price}")]
    BelowHostPrice {
        /// The named host.
        host: Address,
        /// Its registered price in the payment token (0: none).
        host_price: U256,
        /// The job's price per token.
        price: U256,
    },
    /// The token delivered less to the escrow than it was asked to move (fee-on-transfer).
    #[error(
        "token {token:#x} delivered {received} of {amount}: fee-on-transfer tokens are refused"
    )]
    TransferShortfall {
        /// The token.
        token: Address,
        /// What was moved.
        amount: U256,
        /// What arrived.
        received: U256,
    },
    /// The price per token is larger than the contract stores (88 bits).
    #[error("price per token {0} is too large")]
    PriceTooLarge(U256),
    /// The job details are malformed (zero model id or zero max tokens).
    #[error("invalid job details: the model id and max tokens must be non-zero")]
    InvalidJobDetails,
    /// The deadline is sooner than the marketplace's minimum job duration from now.
    #[error("deadline {deadline} is too soon for the chain's current time {now}")]
    InvalidDeadline {
        /// The requested deadline (unix seconds).
        deadline: u64,
        /// The chain's time when the call ran.
        now: U256,
    },
    /// No job has this id.
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The terms passed with a call are not the job's (they do not hash to what is stored).
    #[error("the terms passed for job {0} are not its terms")]
    TermsMismatch(JobId),
    /// Another host claimed the job first.
    #[error("job {job} already claimed by {claimer:#x}")]
    JobAlreadyClaimed {
        /// The job.
        job: JobId,
        /// The host that holds the claim.
        claimer: Address,
    },
    /// The job is not in a state that allows the call.
    #[error("job {job} is {status}, which does not allow this")]
    InvalidJobStatus {
        /// The job.
        job: JobId,
        /// Its current status.
        status: JobStatus,
    },
    /// The job is assigned to another host.
    #[error("job {job} is assigned to {assigned:#x}, not {caller:#x}")]
    NotAssignedHost {
        /// The job.
        job: JobId,
        /// The host named by the job.
        assigned: Address,
        /// Who tried to claim it.
        caller: Address,
    },
    /// The host is not an active registered node serving the job's model.
    #[error("host {host:#x} is not an active registered node serving model {model}")]
    HostNotEligible {
        /// The host.
        host: Address,
        /// The job's model.
        model: ModelId,
    },
    /// Only the claiming host may do this.
    #[error("job {job} was claimed by {claimer:#x}, not {caller:#x}")]
    NotClaimer {
        /// The job.
        job: JobId,
        /// The claiming host.
        claimer: Address,
        /// The caller.
        caller: Address,
    },
    /// Only the job's client may do this.
    #[error("job {job} belongs to client {client:#x}, not {caller:#x}")]
    NotClient {
        /// The job.
        job: JobId,
        /// The job's client.
        client: Address,
        /// The caller.
        caller: Address,
    },
    /// The job's deadline has passed.
    #[error("job {job}: deadline {deadline} has passed")]
    DeadlinePassed {
        /// The job.
        job: JobId,
        /// Its deadline (unix seconds).
        deadline: u64,
    },
    /// The job's deadline has not passed yet.
    #[error("job {job}: deadline {deadline} has not passed yet")]
    DeadlineNotReached {
        /// The job.
        job: JobId,
        /// Its deadline (unix seconds).
        deadline: u64,
    },
    /// The host reported more tokens than the job allows.
    #[error("job {job}: {tokens_used} tokens used exceeds the maximum of {max_tokens}")]
    TokensExceedMax {
        /// The job.
        job: JobId,
        /// Tokens reported.
        tokens_used: U256,
        /// The job's maximum.
        max_tokens: u32,
    },
    /// The result CID is empty or too long.
    #[error("the result CID is empty or longer than 128 bytes")]
    InvalidResultCid,
    /// The receipt is not the job client's signature (wrong signer, job, chain or contract,
    /// or altered).
    #[error("job {0}: the receipt is not signed by the job's client")]
    InvalidReceipt(JobId),
    /// The fee is above the contract's maximum.
    #[error("fee of {0} basis points is above the maximum")]
    FeeTooHigh(u16),
    /// A zero address where one is required.
    #[error("a zero address where one is required")]
    ZeroAddress,
    /// Only the treasury may withdraw the accrued fees.
    #[error("{0:#x} is not the treasury")]
    NotTreasury(Address),
    /// Ownership of the contracts cannot be renounced.
    #[error("ownership cannot be renounced")]
    RenounceDisabled,
    /// No session with this id (never opened, or the id is a job's).
    #[error("session {0} not found")]
    SessionNotFound(JobId),
    /// The session has ended: nothing can be done with it any more.
    #[error("session {session} is {status}, which does not allow this")]
    SessionNotOpen {
        /// The session.
        session: JobId,
        /// Where it is.
        status: fabstir_core::SessionStatus,
    },
    /// The session details are malformed (zero model id or zero host).
    #[error("invalid session details: the model id and the host must be non-zero")]
    InvalidSessionDetails,
    /// A session's deposit does not pay for one token.
    #[error("a deposit of {deposit} does not pay for one token at {price}")]
    DepositTooSmall {
        /// The deposit offered.
        deposit: U256,
        /// The price per token.
        price: U256,
    },
    /// A session's total deposit would be above the contract's maximum (2^96-1).
    #[error("a session deposit of {0} is above the maximum")]
    DepositTooLarge(U256),
    /// A top-up sent another token than the session is paid in.
    #[error("session {session} is paid in {token:#x}")]
    WrongToken {
        /// The session.
        session: JobId,
        /// The token it is paid in (the zero address is ETH).
        token: Address,
    },
    /// The receipt counts fewer tokens than the session has settled (for a partial
    /// settlement: no more).
    #[error(
        "session {session}: a receipt of {tokens} tokens is not newer than the {settled} settled"
    )]
    StaleReceipt {
        /// The session.
        session: JobId,
        /// Tokens the receipt counts.
        tokens: u64,
        /// Tokens settled already.
        settled: u64,
    },
    /// The receipt's tokens cost more than the session's deposit.
    #[error("session {session}: the receipt costs {cost}, the deposit is {deposit}")]
    ReceiptExceedsDeposit {
        /// The session.
        session: JobId,
        /// Tokens x price.
        cost: U256,
        /// Everything deposited.
        deposit: U256,
    },

    // ----- NodeRegistry -----
    /// The address has a registration already (active or unbonding).
    #[error("{0:#x} is already registered")]
    AlreadyRegistered(Address),
    /// The address has no active registration.
    #[error("{0:#x} is not a registered, active node")]
    NotRegistered(Address),
    /// The stake is below the registry's minimum.
    #[error("stake {stake} is below the minimum of {minimum}")]
    StakeTooLow {
        /// Offered stake (FAB base units).
        stake: U256,
        /// Required minimum.
        minimum: U256,
    },
    /// The peer id is empty or too long.
    #[error("invalid peer id: empty or too long")]
    InvalidPeerId,
    /// Too many models, or a duplicate or zero model id.
    #[error("invalid model list: too many, duplicate or zero ids")]
    InvalidModels,
    /// Token and price lists differ, are too long or repeat a token.
    #[error("invalid price list")]
    InvalidPrices,
    /// The metadata is too long.
    #[error("metadata of {0} bytes is too long")]
    MetadataTooLong(U256),
    /// The stake is still unbonding.
    #[error("stake is unbonding until {until}")]
    StillUnbonding {
        /// Unix time when the stake unlocks.
        until: u64,
    },
    /// The node must unregister before withdrawing its stake.
    #[error("{0:#x} must unregister before withdrawing")]
    NotUnbonding(Address),
    /// The stake is locked while the node holds claimed jobs.
    #[error("the stake is locked by {0} claimed jobs")]
    StakeLocked(u64),
    /// The unbonding delay is above the registry's maximum.
    #[error("unbonding delay {0} s is above the maximum")]
    UnbondingDelayTooLong(u64),
    /// The registry's marketplace is bound already.
    #[error("the registry's marketplace is bound already ({0:#x})")]
    MarketplaceAlreadyBound(Address),

    // ----- escrowed funds and tokens -----
    /// Sending ETH failed (the receiver rejected it).
    #[error("sending {amount} wei to {to:#x} failed")]
    EthTransferFailed {
        /// Receiver.
        to: Address,
        /// Amount in wei.
        amount: U256,
    },
    /// An ERC-20 transfer failed (returned false or reverted without a reason).
    #[error("ERC-20 operation on token {0:#x} failed")]
    TokenOperationFailed(Address),
    /// The sender's token balance is too low.
    #[error("insufficient token balance: have {balance}, need {needed}")]
    InsufficientBalance {
        /// Current balance (base units).
        balance: U256,
        /// Amount required.
        needed: U256,
    },
    /// The spender's allowance is too low.
    #[error("insufficient allowance: have {allowance}, need {needed}")]
    InsufficientAllowance {
        /// Current allowance (base units).
        allowance: U256,
        /// Amount required.
        needed: U256,
    },
    /// The account is not the contract's owner.
    #[error("{0:#x} is not the owner")]
    NotOwner(Address),
    /// A reverted call whose reason is a plain string or an error this crate does not name.
    #[error("transaction reverted: {0}")]
    Reverted(String),

    // ----- transport and data -----
    /// The RPC node or the middleware failed.
    #[error("RPC error: {0}")]
    Rpc(String),
    /// The transaction disappeared from the node before it was mined.
    #[error("transaction {0:#x} was dropped")]
    TxDropped(H256),
    /// The transaction was mined and reverted: the chain changed between the gas estimate
    /// (which passed) and the block that included it, for example another party claimed or
    /// cancelled the job first. The sender paid `gas_used` at `effective_gas_price`; nothing
    /// else changed. `reason` is the named cause, found by replaying the call on the state the
    /// block left, when that replay reverts too.
    #[error(
        "transaction {hash:#x} reverted on chain in block {block} ({gas_used} gas spent){}",
        reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
    )]
    TxFailed {
        /// The transaction.
        hash: H256,
        /// The block that included it.
        block: u64,
        /// Gas it used (and the sender paid for).
        gas_used: U256,
        /// Price per gas the sender paid, in wei.
        effective_gas_price: U256,
        /// Why it reverted, if a replay names it.
        reason: Option<Box<Error>>,
    },
    /// The signer has no address to send from.
    #[error("the signer has no sender address")]
    NoSender,
    /// The signer failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A value read from the chain is malformed.
    #[error("invalid data from the chain: {0}")]
    InvalidChainData(String),
    /// A domain value is invalid (from `fabstir-core`).
    #[error(transparent)]
    Core(#[from] fabstir_core::Error),
    /// The local anvil chain could not be started.
    #[error("anvil: {0}")]
    Anvil(String),
}

impl Error {
    /// Converts an ethers contract error, decoding revert data into a named cause.
    pub fn from_contract<M: Middleware>(error: ContractError<M>) -> Self {
        match error.as_revert() {
            Some(data) => Self::from_revert_data(data),
            None => Self::Rpc(error.to_string()),
        }
    }

    /// Decodes revert data returned by any Fabstir contract or token.
    pub fn from_revert_data(data: &[u8]) -> Self {
        if let Some(e) = job_marketplace::JobMarketplaceErrors::decode_with_selector(data) {
            return decode::from_marketplace(e);
        }
        if let Some(e) = node_registry::NodeRegistryErrors::decode_with_selector(data) {
            return decode::from_registry(e);
        }
        if let Some(e) = erc20::Erc20PermitErrors::decode_with_selector(data) {
            return decode::from_token(e);
        }
        if data.is_empty() {
            return Self::Reverted("no reason given".to_owned());
        }
        let selector: String = data.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Self::Reverted(format!("unknown error 0x{selector} ({} bytes)", data.len()))
    }
}

mod decode;

#[cfg(test)]
mod tests;
