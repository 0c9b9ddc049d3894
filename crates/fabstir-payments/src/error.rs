//! The error type of `fabstir-payments`.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::types::Address;

/// Everything that can go wrong routing a payment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The owner does not hold enough of the token; both amounts in human units.
    #[error("insufficient {symbol}: need {need}, have {have}")]
    InsufficientBalance {
        /// The token's symbol.
        symbol: String,
        /// What the payment needs, formatted ("1.50 USDC").
        need: String,
        /// What the owner holds, formatted ("0.20 USDC").
        have: String,
    },
    /// The token is not in this chain's registry or not accepted by the marketplace.
    #[error("token {0} is not accepted for payment")]
    TokenNotAccepted(String),
    /// The chain reports other metadata for a token than the registry holds.
    #[error("token {address:#x} metadata mismatch: registry says {expected}, chain says {actual}")]
    TokenMismatch {
        /// The token.
        address: Address,
        /// What the registry holds ("USDC, 6 decimals").
        expected: String,
        /// What the chain reports.
        actual: String,
    },
    /// The amount could not be parsed for the token (too many decimals, negative...).
    #[error(transparent)]
    Amount(#[from] fabstir_core::Error),
    /// The escrow a job needs does not fit in 256 bits.
    #[error("the job's escrow overflows")]
    EscrowOverflow,
    /// The token does not support EIP-2612 permit but the permit path was required.
    #[error("token {0} does not support permit")]
    PermitUnsupported(String),
    /// The signer has no address.
    #[error("the signer has no address")]
    NoSender,
    /// An error met by a concurrent caller loading the same cached value, shared by every
    /// caller that waited for that load.
    #[error(transparent)]
    Shared(Arc<Error>),
    /// A contract call failed (revert decoded by `fabstir-contracts`, or transport).
    #[error(transparent)]
    Contract(#[from] fabstir_contracts::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A token whose registry entry and chain disagree; each side is (symbol, decimals).
    pub(crate) fn token_mismatch(
        address: Address,
        expected: (&str, u8),
        actual: (&str, u8),
    ) -> Self {
        let describe = |(symbol, decimals): (&str, u8)| format!("{symbol}, {decimals} decimals");
        Self::TokenMismatch {
            address,
            expected: describe(expected),
            actual: describe(actual),
        }
    }
}

/// A failed call through a raw contract binding, decoded as `fabstir-contracts` does.
pub(crate) fn contract_error<M: Middleware>(e: ethers::contract::ContractError<M>) -> Error {
    fabstir_contracts::Error::from_contract(e).into()
}

/// Unwraps an error shared by moka between the callers of one load, keeping the variants
/// callers match on.
pub(crate) fn unshare(e: Arc<Error>) -> Error {
    match Arc::try_unwrap(e) {
        Ok(e) => e,
        Err(shared) => match &*shared {
            Error::TokenMismatch {
                address,
                expected,
                actual,
            } => Error::TokenMismatch {
                address: *address,
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::TokenNotAccepted(token) => Error::TokenNotAccepted(token.clone()),
            _ => Error::Shared(shared),
        },
    }
}
