//! Sessions in the in-memory marketplace, with `Sessions.sol`'s rules: open (fully checked,
//! the deposit moved to escrow), top up, the host's partial settlements and close with the
//! client's cumulative receipt (only the increase is paid, the fee on the running total), the
//! client's challenge close and expiry.

use fabstir_contracts::Error as Revert;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::primitives::Address;
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt};
use fabstir_core::{
    JobPayment, OnChainSession, SessionDetails, SessionId, SessionSettlement, SessionSplit,
    SessionStatus, TokenAmount,
};

use super::{ChainState, FEE_BPS, InMemoryChain, MARKETPLACE, RULES, reverted};
use crate::{Error, Result};

impl ChainState {
    pub(super) fn session(&self, id: SessionId) -> Result<OnChainSession> {
        self.sessions
            .get(&id)
            .cloned()
            .ok_or(Error::Contracts(Revert::SessionNotFound(id)))
    }

    /// An open (or closing) session, as the contract manager refuses finished ones.
    fn open_session(&self, id: SessionId) -> Result<OnChainSession> {
        let session = self.session(id)?;
        if !session.status.is_open() {
            return Err(reverted(Revert::SessionNotOpen {
                session: id,
                status: session.status,
            }));
        }
        Ok(session)
    }

    /// Moves `payment` from `owner`'s balance into escrow.
    pub(super) fn take(&mut self, owner: Address, payment: &JobPayment) -> Result<()> {
        let key = (owner, payment.token.address());
        let have = self.balances.get(&key).copied().unwrap_or_default();
        let Some(left) = have.checked_sub(payment.amount) else {
            return Err(fabstir_payments::Error::InsufficientBalance {
                symbol: payment.token.symbol.clone(),
                need: payment.token.format_amount(payment.amount),
                have: payment.token.format_amount(have),
            }
            .into());
        };
        self.balances.insert(key, left);
        Ok(())
    }
}

impl InMemoryChain {
    pub(super) fn open_session_now(
        &self,
        details: &SessionDetails,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<SessionId> {
        let client = address_of(key);
        let price = details.price_per_token;
        if price == TokenAmount::ZERO {
            return Err(reverted(Revert::ZeroPrice));
        }
        let now = self.clock();
        if details.expiry < now + RULES.min_job_duration {
            return Err(reverted(Revert::InvalidDeadline {
                deadline: details.expiry,
                now: now.into(),
            }));
        }
        if details.host == Address::zero() {
            return Err(reverted(Revert::InvalidSessionDetails));
        }
        if payment.amount < price {
            return Err(reverted(Revert::DepositTooSmall {
                deposit: payment.amount.base_units(),
                price: price.base_units(),
            }));
        }
        let mut state = self.state();
        state.take(client, payment)?;
        let id = fabstir_core::JobId(state.next_job);
        state.next_job += 1;
        state.sessions.insert(
            id,
            OnChainSession {
                id,
                client,
                token: payment.token.address(),
                details: *details,
                deposit: payment.amount,
                settled_tokens: 0,
                fee_bps: FEE_BPS,
                status: SessionStatus::Open,
                close_by: None,
            },
        );
        Ok(id)
    }

    pub(super) fn top_up_session_now(
        &self,
        id: SessionId,
        amount: TokenAmount,
        key: &SigningKey,
    ) -> Result<()> {
        let caller = address_of(key);
        let now = self.clock();
        let mut state = self.state();
        let session = state.open_session(id)?;
        if session.status != SessionStatus::Open {
            return Err(not_open(id, session.status));
        }
        if caller != session.client {
            return Err(not_client(&session, caller));
        }
        if now > session.details.expiry {
            return Err(reverted(Revert::DeadlinePassed {
                job: id,
                deadline: session.details.expiry,
            }));
        }
        let token = self
            .tokens
            .iter()
            .find(|t| t.address() == session.token)
            .cloned()
            .ok_or_else(|| fabstir_payments::Error::TokenNotAccepted(session.token.to_string()))?;
        state.take(caller, &JobPayment { token, amount })?;
        if let Some(s) = state.sessions.get_mut(&id) {
            s.deposit = s.deposit.checked_add(amount).unwrap_or(s.deposit);
        }
        Ok(())
    }

    pub(super) fn request_session_close_now(&self, id: SessionId, key: &SigningKey) -> Result<()> {
        let caller = address_of(key);
        let now = self.clock();
        let mut state = self.state();
        let session = state.open_session(id)?;
        if session.status != SessionStatus::Open {
            return Err(not_open(id, session.status));
        }
        if caller != session.client {
            return Err(not_client(&session, caller));
        }
        let settle_by = (now + RULES.close_window).min(session.settle_by(&RULES));
        if let Some(s) = state.sessions.get_mut(&id) {
            s.status = SessionStatus::Closing;
            s.close_by = Some(settle_by);
        }
        Ok(())
    }

    pub(super) fn expire_session_now(&self, id: SessionId) -> Result<()> {
        let now = self.clock();
        let mut state = self.state();
        let session = state.open_session(id)?;
        let end = session.settle_by(&RULES);
        if now <= end {
            return Err(reverted(Revert::DeadlineNotReached {
                job: id,
                deadline: end,
            }));
        }
        state.credit(session.client, session.token, session.unsettled());
        if let Some(s) = state.sessions.get_mut(&id) {
            s.status = SessionStatus::Expired;
            s.close_by = None;
        }
        Ok(())
    }

    /// The host settles part of a session with the client's newest receipt (what a real
    /// host's `settleSession` does): only the increase since the last settlement is paid.
    /// Returns what the host was paid.
    pub fn settle_session(
        &self,
        id: SessionId,
        host: Address,
        receipt: &SignedReceipt,
    ) -> Result<TokenAmount> {
        let mut state = self.state();
        let session = self.check_settlement(&state, id, host, receipt)?;
        if receipt.tokens == session.settled_tokens {
            return Err(stale(&session, receipt));
        }
        self.check_signature(&session, receipt)?;
        Ok(pay_increase(
            &mut state,
            &session,
            receipt.tokens,
            self.treasury,
        ))
    }

    /// The host closes a session with the client's newest receipt, or with none to be paid
    /// nothing more (what a real host's `closeSession` does); the client gets the rest back.
    pub fn close_session(
        &self,
        id: SessionId,
        host: Address,
        receipt: Option<&SignedReceipt>,
    ) -> Result<SessionSettlement> {
        let mut state = self.state();
        let settled = state.open_session(id)?.settled_tokens;
        let unchanged = SignedReceipt {
            tokens: settled,
            transcript: Default::default(),
            signature: Vec::new(),
        };
        let receipt = receipt.unwrap_or(&unchanged);
        let session = self.check_settlement(&state, id, host, receipt)?;
        if receipt.tokens != session.settled_tokens {
            self.check_signature(&session, receipt)?;
        }
        pay_increase(&mut state, &session, receipt.tokens, self.treasury);
        let whole = SessionSplit::of(receipt.tokens, session.details.price_per_token, FEE_BPS);
        let refund = session.deposit.checked_sub(whole.cost).unwrap_or_default();
        state.credit(session.client, session.token, refund);
        if let Some(s) = state.sessions.get_mut(&id) {
            s.status = SessionStatus::Closed;
            s.settled_tokens = receipt.tokens;
            s.close_by = None;
        }
        Ok(SessionSettlement {
            session: id,
            tokens: receipt.tokens,
            transcript: receipt.transcript,
            paid: whole.paid,
            fee: whole.fee,
            refund,
        })
    }

    /// The contract's checks before a settlement, in its order: an open session, its host,
    /// in time, a receipt no older than the last settled and within the deposit.
    fn check_settlement(
        &self,
        state: &ChainState,
        id: SessionId,
        host: Address,
        receipt: &SignedReceipt,
    ) -> Result<OnChainSession> {
        let session = state.open_session(id)?;
        if host != session.details.host {
            return Err(reverted(Revert::NotClaimer {
                job: id,
                claimer: session.details.host,
                caller: host,
            }));
        }
        let end = session.settle_by(&RULES);
        if self.clock() > end {
            return Err(reverted(Revert::DeadlinePassed {
                job: id,
                deadline: end,
            }));
        }
        if receipt.tokens < session.settled_tokens {
            return Err(stale(&session, receipt));
        }
        let cost = session
            .details
            .price_per_token
            .base_units()
            .saturating_mul(receipt.tokens.into());
        if cost > session.deposit.base_units() {
            return Err(reverted(Revert::ReceiptExceedsDeposit {
                session: id,
                cost,
                deposit: session.deposit.base_units(),
            }));
        }
        Ok(session)
    }

    fn check_signature(&self, session: &OnChainSession, receipt: &SignedReceipt) -> Result<()> {
        let domain = ReceiptDomain {
            chain_id: self.chain_id,
            marketplace: MARKETPLACE,
        };
        let signer = receipt
            .receipt(session.id)
            .signer(&domain, &receipt.signature);
        if signer.ok() != Some(session.client) {
            return Err(reverted(Revert::InvalidReceipt(session.id)));
        }
        Ok(())
    }
}

/// Credits the host the increase from the settled tokens to `tokens` and accrues its fee;
/// records `tokens` as settled. Returns what the host was paid.
fn pay_increase(
    state: &mut ChainState,
    session: &OnChainSession,
    tokens: u64,
    treasury: Address,
) -> TokenAmount {
    let price = session.details.price_per_token;
    let now = SessionSplit::of(tokens, price, session.fee_bps);
    let before = SessionSplit::of(session.settled_tokens, price, session.fee_bps);
    let paid = now.paid.checked_sub(before.paid).unwrap_or_default();
    let fee = now.fee.checked_sub(before.fee).unwrap_or_default();
    let host = session.details.host;
    let earned = state.credits.entry((host, session.token)).or_default();
    *earned = earned.checked_add(paid).unwrap_or(*earned);
    state.credit(treasury, session.token, fee);
    if let Some(s) = state.sessions.get_mut(&session.id) {
        s.settled_tokens = tokens;
    }
    paid
}

fn stale(session: &OnChainSession, receipt: &SignedReceipt) -> Error {
    reverted(Revert::StaleReceipt {
        session: session.id,
        tokens: receipt.tokens,
        settled: session.settled_tokens,
    })
}

fn not_client(session: &OnChainSession, caller: Address) -> Error {
    reverted(Revert::NotClient {
        job: session.id,
        client: session.client,
        caller,
    })
}

fn not_open(id: SessionId, status: SessionStatus) -> Error {
    reverted(Revert::SessionNotOpen {
        session: id,
        status,
    })
}
