//! The spending caps: per request and per UTC day, enforced before any transaction.
//!
//! A request first takes a [`Hold`] on the day's budget: the most it may escrow. The SDK is
//! given that amount as the job's budget, so it refuses every quote above it before posting.
//! When the request ends, the hold is replaced by what the job really cost (paid to the host
//! plus the fee; the rest of the escrow was refunded). A request whose outcome is unknown
//! (its client went away mid-stream) keeps its whole hold as spent: the cap stays safe.

use std::sync::{Arc, Mutex};

use fabstir_core::TokenAmount;
use fabstir_core::clock::unix_now;

const DAY_SECS: u64 = 24 * 60 * 60;

/// Which cap bounds a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// No cap applies.
    None,
    /// The per-request cap (or the price cap times `max_tokens`).
    Request,
    /// What is left of the day's cap.
    Day,
}

/// The day's ledger.
#[derive(Debug, Default)]
struct Ledger {
    /// The UTC day (days since the epoch) `spent` belongs to.
    day: u64,
    /// Spent today by finished requests.
    spent: TokenAmount,
    /// Held by requests still running.
    held: TokenAmount,
}

/// The caps and the day's ledger.
#[derive(Debug)]
pub(crate) struct Budget {
    per_request: Option<TokenAmount>,
    per_day: Option<TokenAmount>,
    ledger: Mutex<Ledger>,
}

/// The day's cap is used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayExhausted {
    /// The cap.
    pub(crate) cap: TokenAmount,
}

impl Budget {
    /// Caps of `per_request` and `per_day` (`None`: no cap).
    pub(crate) fn new(per_request: Option<TokenAmount>, per_day: Option<TokenAmount>) -> Self {
        Self {
            per_request,
            per_day,
            ledger: Mutex::new(Ledger {
                day: unix_now() / DAY_SECS,
                ..Ledger::default()
            }),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let today = unix_now() / DAY_SECS;
        if ledger.day != today {
            ledger.day = today;
            ledger.spent = TokenAmount::ZERO;
        }
        ledger
    }

    /// Spent today by finished requests.
    pub(crate) fn spent_today(&self) -> TokenAmount {
        self.ledger().spent
    }

    /// Holds the most a request may escrow: the smallest of the per-request cap, `bound`
    /// (the request's own worst case, when known) and what is left of the day.
    pub(crate) fn hold(self: &Arc<Self>, bound: Option<TokenAmount>) -> Result<Hold, DayExhausted> {
        let request = match (self.per_request, bound) {
            (Some(cap), Some(bound)) => Some(cap.min(bound)),
            (cap, bound) => cap.or(bound),
        };
        let mut ledger = self.ledger();
        let (amount, cap) = match self.per_day {
            None => (
                request,
                if self.per_request.is_some() {
                    Cap::Request
                } else {
                    Cap::None
                },
            ),
            Some(day) => {
                let used = ledger.spent.checked_add(ledger.held).unwrap_or(day);
                let left = day.checked_sub(used).unwrap_or(TokenAmount::ZERO);
                if left.is_zero() {
                    return Err(DayExhausted { cap: day });
                }
                match request {
                    Some(r) if r <= left => {
                        let cap = if self.per_request.is_some() {
                            Cap::Request
                        } else {
                            Cap::None
                        };
                        (Some(r), cap)
                    }
                    _ => (Some(left), Cap::Day),
                }
            }
        };
        if self.per_day.is_some()
            && let Some(amount) = amount
        {
            ledger.held = ledger.held.checked_add(amount).unwrap_or(ledger.held);
        }
        Ok(Hold {
            budget: self.clone(),
            amount,
            cap,
            settled: false,
        })
    }

    fn release(&self, held: Option<TokenAmount>, spent: TokenAmount) {
        let mut ledger = self.ledger();
        if self.per_day.is_some()
            && let Some(held) = held
        {
            ledger.held = ledger.held.checked_sub(held).unwrap_or(TokenAmount::ZERO);
        }
        ledger.spent = ledger.spent.checked_add(spent).unwrap_or(ledger.spent);
    }
}

/// A running request's share of the budget.
#[derive(Debug)]
pub(crate) struct Hold {
    budget: Arc<Budget>,
    amount: Option<TokenAmount>,
    cap: Cap,
    settled: bool,
}

impl Hold {
    /// The most the request may escrow (`None`: no cap).
    pub(crate) fn amount(&self) -> Option<TokenAmount> {
        self.amount
    }

    /// Which cap set [`Self::amount`].
    pub(crate) fn cap(&self) -> Cap {
        self.cap
    }

    /// The request ended having spent `spent`.
    pub(crate) fn settle(mut self, spent: TokenAmount) {
        self.settled = true;
        self.budget.release(self.amount, spent);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if !self.settled {
            // Outcome unknown: count the whole hold as spent.
            self.budget
                .release(self.amount, self.amount.unwrap_or(TokenAmount::ZERO));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(n: u64) -> TokenAmount {
        TokenAmount::from_base_units(n)
    }

    #[test]
    fn a_hold_is_the_smallest_cap() {
        let budget = Arc::new(Budget::new(Some(units(500)), Some(units(1_000))));
        let hold = budget.hold(Some(units(300))).unwrap();
        assert_eq!(
            (hold.amount(), hold.cap()),
            (Some(units(300)), Cap::Request)
        );
        let second = budget.hold(None).unwrap();
        assert_eq!(second.amount(), Some(units(500)));
        // 800 held: 200 left of the day, which now bounds the next request.
        let third = budget.hold(None).unwrap();
        assert_eq!((third.amount(), third.cap()), (Some(units(200)), Cap::Day));
        assert_eq!(
            budget.hold(None).unwrap_err(),
            DayExhausted { cap: units(1_000) }
        );
        hold.settle(units(120));
        second.settle(units(0));
        third.settle(units(80));
        assert_eq!(budget.spent_today(), units(200));
        assert_eq!(budget.hold(None).unwrap().amount(), Some(units(500)));
    }

    #[test]
    fn an_unknown_outcome_counts_as_spent() {
        let budget = Arc::new(Budget::new(None, Some(units(100))));
        drop(budget.hold(Some(units(60))).unwrap());
        assert_eq!(budget.spent_today(), units(60));
        let hold = budget.hold(None).unwrap();
        assert_eq!((hold.amount(), hold.cap()), (Some(units(40)), Cap::Day));
    }

    #[test]
    fn no_caps_no_limit() {
        let budget = Arc::new(Budget::new(None, None));
        let hold = budget.hold(None).unwrap();
        assert_eq!((hold.amount(), hold.cap()), (None, Cap::None));
        hold.settle(units(7));
        assert_eq!(budget.spent_today(), units(7));
    }
}
