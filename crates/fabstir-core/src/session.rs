//! Sessions: many prompts on one deposit with one host (a payment channel). The client opens a
//! session with a deposit, signs cumulative [`Receipt`](crate::receipt::Receipt)s for the
//! tokens it received across all prompts, and the host settles with the newest: partly at any
//! time (only the increase is paid) and finally when it closes the session, which refunds the
//! rest. A session's id lives in the same id space as jobs ([`JobId`]), so a receipt names
//! either a job or a session, never both.

use std::fmt;

use ethers_core::types::{Address, H256};
use serde::{Deserialize, Serialize};

use crate::amount::TokenAmount;
use crate::ids::{JobId, ModelId};
use crate::market::MarketRules;

/// A session's id: the marketplace id (shared with jobs) of the session.
pub type SessionId = JobId;

/// What a client opens a session with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetails {
    /// The model every prompt runs on.
    pub model: ModelId,
    /// The host that serves the session.
    pub host: Address,
    /// The price per counted token, in the payment token's base units.
    pub price_per_token: TokenAmount,
    /// When the session ends (unix seconds); the host may settle for a grace period after.
    pub expiry: u64,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionStatus {
    /// No such session.
    None,
    /// Open: the host serves prompts and may settle.
    Open,
    /// The client asked to close: the host may settle or close until the close window ends,
    /// then anyone may expire the session.
    Closing,
    /// The host closed it with the client's newest receipt; the rest was refunded.
    Closed,
    /// Its time ran out; what was not settled went back to the client.
    Expired,
}

impl SessionStatus {
    /// Whether the session still holds a deposit (open or closing).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Open | Self::Closing)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "not found",
            Self::Open => "open",
            Self::Closing => "closing",
            Self::Closed => "closed",
            Self::Expired => "expired",
        })
    }
}

/// A session as the marketplace holds it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnChainSession {
    /// The session's id.
    pub id: SessionId,
    /// Who opened and pays for it.
    pub client: Address,
    /// The payment token (the zero address is ETH).
    pub token: Address,
    /// Model, host, price and expiry.
    pub details: SessionDetails,
    /// Everything deposited: at opening and by top-ups, in base units.
    pub deposit: TokenAmount,
    /// Tokens the host has settled so far (from the newest receipt it settled with).
    pub settled_tokens: u64,
    /// The protocol fee in basis points, fixed when the session was opened.
    pub fee_bps: u16,
    /// Where the session is.
    pub status: SessionStatus,
    /// While closing, the end of the close window (unix seconds).
    pub close_by: Option<u64>,
}

impl OnChainSession {
    /// What the session has paid for so far: settled tokens x price.
    pub fn settled_cost(&self) -> TokenAmount {
        TokenAmount(
            self.details
                .price_per_token
                .base_units()
                .saturating_mul(self.settled_tokens.into()),
        )
    }

    /// The deposit not yet settled: what the client gets back if nothing more is settled.
    pub fn unsettled(&self) -> TokenAmount {
        TokenAmount(
            self.deposit
                .base_units()
                .saturating_sub(self.settled_cost().base_units()),
        )
    }

    /// How many tokens in all the deposit pays for.
    pub fn covered_tokens(&self) -> u64 {
        let price = self.details.price_per_token.base_units();
        if price.is_zero() {
            return 0;
        }
        let tokens = self.deposit.base_units() / price;
        tokens.min(u64::MAX.into()).as_u64()
    }

    /// The last second (unix time) the host may settle or close, after which anyone may expire
    /// the session, under `rules`.
    pub fn settle_by(&self, rules: &MarketRules) -> u64 {
        match self.close_by {
            Some(close_by) if self.status == SessionStatus::Closing => close_by,
            _ => self.details.expiry.saturating_add(rules.submit_grace),
        }
    }
}

/// What a receipt of `tokens` in all pays, given `fee_bps`, as the contract computes it: the
/// fee is taken on the running total, so partial settlements add up to the same split as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSplit {
    /// Tokens x price.
    pub cost: TokenAmount,
    /// The protocol fee on the cost (rounded down).
    pub fee: TokenAmount,
    /// Paid to the host: cost less fee.
    pub paid: TokenAmount,
}

impl SessionSplit {
    /// The split of `tokens` at `price_per_token` with a fee of `fee_bps` basis points.
    pub fn of(tokens: u64, price_per_token: TokenAmount, fee_bps: u16) -> Self {
        let cost = price_per_token.base_units().saturating_mul(tokens.into());
        let fee = cost.saturating_mul(fee_bps.into()) / 10_000u64;
        Self {
            cost: TokenAmount(cost),
            fee: TokenAmount(fee),
            paid: TokenAmount(cost - fee),
        }
    }
}

/// How a session ended with the host's close (its `SessionClosed` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSettlement {
    /// The session.
    pub session: SessionId,
    /// Tokens the newest receipt counts, over every prompt.
    pub tokens: u64,
    /// Its transcript hash.
    pub transcript: H256,
    /// Paid to the host over the whole session, after the fee.
    pub paid: TokenAmount,
    /// Paid to the treasury over the whole session.
    pub fee: TokenAmount,
    /// Returned to the client at the close.
    pub refund: TokenAmount,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fee_is_taken_on_the_running_total() {
        let price = TokenAmount::from_base_units(7u64);
        let whole = SessionSplit::of(1_001, price, 250);
        assert_eq!(whole.cost, TokenAmount::from_base_units(7_007u64));
        assert_eq!(whole.fee, TokenAmount::from_base_units(175u64));
        assert_eq!(whole.paid, TokenAmount::from_base_units(6_832u64));
        // Fees rounded per step would lose base units: 3 steps of 333/334/334 tokens.
        let steps: u64 = [333u64, 334, 334]
            .iter()
            .map(|&t| SessionSplit::of(t, price, 250).fee.base_units().as_u64())
            .sum();
        assert!(steps < whole.fee.base_units().as_u64());
    }

    #[test]
    fn a_session_knows_what_is_unsettled_and_when_it_ends() {
        let session = OnChainSession {
            id: JobId(1 << 32),
            client: Address::repeat_byte(1),
            token: Address::zero(),
            details: SessionDetails {
                model: ModelId::from_name("m"),
                host: Address::repeat_byte(2),
                price_per_token: TokenAmount::from_base_units(10u64),
                expiry: 1_000,
            },
            deposit: TokenAmount::from_base_units(1_005u64),
            settled_tokens: 40,
            fee_bps: 0,
            status: SessionStatus::Open,
            close_by: None,
        };
        assert_eq!(session.unsettled(), TokenAmount::from_base_units(605u64));
        assert_eq!(session.covered_tokens(), 100);
        let rules = MarketRules {
            min_job_duration: 60,
            submit_grace: 30,
            close_window: 20,
        };
        assert_eq!(session.settle_by(&rules), 1_030);
        let closing = OnChainSession {
            status: SessionStatus::Closing,
            close_by: Some(900),
            ..session
        };
        assert_eq!(closing.settle_by(&rules), 900);
    }
}
