//! Revert data of each contract decoded into the crate's [`Error`].

use ethers::types::{Address, U256};
use fabstir_core::{JobId, ModelId};

use super::Error;
use crate::bindings::{erc20, job_marketplace, node_registry};
use crate::types::JobStatus;

/// Converts a contract `uint256` job id; an id beyond 64 bits cannot be ours.
fn job(id: U256) -> JobId {
    JobId(id.low_u64())
}

pub(super) fn from_marketplace(e: job_marketplace::JobMarketplaceErrors) -> Error {
    use job_marketplace::JobMarketplaceErrors as E;
    match e {
        E::TokenNotAccepted(e) => Error::TokenNotAccepted(e.token),
        E::ZeroPrice(_) => Error::ZeroPrice,
        E::WrongAmount(e) => Error::WrongAmount {
            expected: e.expected,
            amount: e.amount,
        },
        E::BelowHostPrice(e) => Error::BelowHostPrice {
            host: e.host,
            host_price: e.host_price,
            price: e.price_per_token,
        },
        E::TransferShortfall(e) => Error::TransferShortfall {
            token: e.token,
            amount: e.amount,
            received: e.received,
        },
        E::NotTreasury(e) => Error::NotTreasury(e.caller),
        E::RenounceDisabled(_) => Error::RenounceDisabled,
        E::PriceTooLarge(e) => Error::PriceTooLarge(e.price_per_token),
        E::InvalidJobDetails(_) => Error::InvalidJobDetails,
        E::InvalidDeadline(e) => Error::InvalidDeadline {
            deadline: e.deadline,
            now: e.current_time,
        },
        E::JobNotFound(e) => Error::JobNotFound(job(e.job_id)),
        // The contract does not store the claimer; the manager fills it in from the job's
        // JobClaimed event.
        E::JobAlreadyClaimed(e) => Error::JobAlreadyClaimed {
            job: job(e.job_id),
            claimer: Address::zero(),
        },
        E::TermsMismatch(e) => Error::TermsMismatch(job(e.job_id)),
        E::EthTransferFailed(e) => Error::EthTransferFailed {
            to: e.to,
            amount: e.amount,
        },
        E::SafeERC20FailedOperation(e) => Error::TokenOperationFailed(e.token),
        E::InvalidJobStatus(e) => Error::InvalidJobStatus {
            job: job(e.job_id),
            status: JobStatus::from_u8(e.status),
        },
        E::NotAssignedHost(e) => Error::NotAssignedHost {
            job: job(e.job_id),
            assigned: e.assigned,
            caller: e.caller,
        },
        E::HostNotEligible(e) => Error::HostNotEligible {
            host: e.host,
            model: ModelId(e.model_id),
        },
        E::NotClaimer(e) => Error::NotClaimer {
            job: job(e.job_id),
            claimer: e.claimer,
            caller: e.caller,
        },
        E::NotClient(e) => Error::NotClient {
            job: job(e.job_id),
            client: e.client,
            caller: e.caller,
        },
        E::DeadlinePassed(e) => Error::DeadlinePassed {
            job: job(e.job_id),
            deadline: e.deadline,
        },
        E::DeadlineNotReached(e) => Error::DeadlineNotReached {
            job: job(e.job_id),
            deadline: e.deadline,
        },
        E::TokensExceedMax(e) => Error::TokensExceedMax {
            job: job(e.job_id),
            tokens_used: e.tokens_used,
            max_tokens: e.max_tokens,
        },
        E::InvalidResultCid(_) => Error::InvalidResultCid,
        E::InvalidReceipt(e) => Error::InvalidReceipt(job(e.job_id)),
        E::FeeTooHigh(e) => Error::FeeTooHigh(e.fee_bps),
        E::ZeroAddress(_) => Error::ZeroAddress,
        E::InvalidSessionDetails(_) => Error::InvalidSessionDetails,
        E::DepositTooSmall(e) => Error::DepositTooSmall {
            deposit: e.deposit,
            price: e.price_per_token,
        },
        E::DepositTooLarge(e) => Error::DepositTooLarge(e.deposit),
        E::WrongToken(e) => Error::WrongToken {
            session: job(e.session_id),
            token: e.token,
        },
        E::StaleReceipt(e) => Error::StaleReceipt {
            session: job(e.session_id),
            tokens: e.tokens,
            settled: e.settled,
        },
        E::ReceiptExceedsDeposit(e) => Error::ReceiptExceedsDeposit {
            session: job(e.session_id),
            cost: e.cost,
            deposit: e.deposit,
        },
        E::OwnableUnauthorizedAccount(e) => Error::NotOwner(e.account),
        E::RevertString(s) => Error::Reverted(s),
        other => Error::Reverted(format!("{other:?}")),
    }
}

pub(super) fn from_registry(e: node_registry::NodeRegistryErrors) -> Error {
    use node_registry::NodeRegistryErrors as E;
    match e {
        E::AlreadyRegistered(e) => Error::AlreadyRegistered(e.node),
        E::NotRegistered(e) => Error::NotRegistered(e.node),
        E::StakeTooLow(e) => Error::StakeTooLow {
            stake: e.stake,
            minimum: e.minimum,
        },
        E::InvalidPeerId(_) => Error::InvalidPeerId,
        E::InvalidModels(_) => Error::InvalidModels,
        E::InvalidPrices(_) => Error::InvalidPrices,
        E::MetadataTooLong(e) => Error::MetadataTooLong(e.length),
        E::StillUnbonding(e) => Error::StillUnbonding {
            until: e.unbonding_end,
        },
        E::NotUnbonding(e) => Error::NotUnbonding(e.node),
        E::StakeLocked(e) => Error::StakeLocked(e.open_claims.low_u64()),
        E::UnbondingDelayTooLong(e) => Error::UnbondingDelayTooLong(e.delay),
        E::MarketplaceAlreadyBound(e) => Error::MarketplaceAlreadyBound(e.marketplace),
        E::RenounceDisabled(_) => Error::RenounceDisabled,
        E::OwnableUnauthorizedAccount(e) => Error::NotOwner(e.account),
        E::SafeERC20FailedOperation(e) => Error::TokenOperationFailed(e.token),
        E::RevertString(s) => Error::Reverted(s),
        other => Error::Reverted(format!("{other:?}")),
    }
}

pub(super) fn from_token(e: erc20::Erc20PermitErrors) -> Error {
    use erc20::Erc20PermitErrors as E;
    match e {
        E::ERC20InsufficientBalance(e) => Error::InsufficientBalance {
            balance: e.balance,
            needed: e.needed,
        },
        E::ERC20InsufficientAllowance(e) => Error::InsufficientAllowance {
            allowance: e.allowance,
            needed: e.needed,
        },
        E::RevertString(s) => Error::Reverted(s),
        other => Error::Reverted(format!("{other:?}")),
    }
}
