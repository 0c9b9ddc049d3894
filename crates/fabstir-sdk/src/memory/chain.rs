//! [`InMemoryChain`]: the marketplace's rules on maps, with a movable clock.

mod sessions;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fabstir_contracts::Error as Revert;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::cid::Cid;
use fabstir_core::clock::unix_now;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt};
use fabstir_core::{
    JobDetails, JobId, JobOutcome, JobPayment, JobRequirements, JobSettlement, JobStatus,
    MarketRules, OnChainJob, OnChainSession, PaymentToken, RefundReason, SessionDetails, SessionId,
    TokenAmount,
};

use crate::ports::ChainLayer;
use crate::{Error, Result};

/// Protocol fee of the in-memory marketplace, in basis points.
pub const FEE_BPS: u16 = 100;

/// The address the in-memory marketplace signs receipts for (its EIP-712 contract).
const MARKETPLACE: Address = Address::repeat_byte(0xaa);

/// The time rules of the in-memory marketplace: those of the local anvil deployment.
pub(crate) const RULES: MarketRules = fabstir_contracts::LOCAL_RULES;

#[derive(Debug, Default)]
struct ChainState {
    jobs: HashMap<JobId, OnChainJob>,
    outcomes: HashMap<JobId, JobOutcome>,
    /// Sessions, open and finished (they share the jobs' id space, as on chain).
    sessions: HashMap<SessionId, OnChainSession>,
    balances: HashMap<(Address, Address), TokenAmount>,
    credits: HashMap<(Address, Address), TokenAmount>,
    next_job: u64,
}

impl ChainState {
    fn credit(&mut self, owner: Address, token: Address, amount: TokenAmount) {
        let balance = self.balances.entry((owner, token)).or_default();
        *balance = balance.checked_add(amount).unwrap_or(*balance);
    }

    fn job(&self, id: JobId) -> Result<OnChainJob> {
        self.jobs
            .get(&id)
            .cloned()
            .ok_or(Error::Contracts(Revert::JobNotFound(id)))
    }

    fn set_status(&mut self, id: JobId, status: JobStatus) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.status = status;
        }
    }
}

fn reverted(error: Revert) -> Error {
    Error::Contracts(error)
}

/// A marketplace in memory with the contract's rules: post (fully funded, balance checked and
/// moved to escrow), claim, settle with `tokens x price` less a 1% fee (accrued for the
/// treasury), cancel, ask to close, expire (when the job's time is up on its clock, which
/// [`InMemoryChain::advance`] moves); sessions with the same rules as `Sessions.sol`
/// (the host's side through [`InMemoryChain::settle_session`] and
/// [`InMemoryChain::close_session`]). Unlike the chain it keeps no registry: any address may
/// be a session's host. It passes the chain conformance suite that
/// the anvil-backed [`ChainClient`](crate::ChainClient) passes.
#[derive(Debug)]
pub struct InMemoryChain {
    chain_id: u64,
    tokens: Vec<PaymentToken>,
    treasury: Address,
    offset: AtomicU64,
    state: Mutex<ChainState>,
}

impl InMemoryChain {
    /// A chain with these tokens; fees go to `treasury`.
    pub fn new(chain_id: u64, tokens: Vec<PaymentToken>, treasury: Address) -> Self {
        Self {
            chain_id,
            tokens,
            treasury,
            offset: AtomicU64::new(0),
            state: Mutex::new(ChainState {
                next_job: 1,
                ..ChainState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Credits `amount` of `token` to `owner`.
    pub fn mint(&self, owner: Address, token: Address, amount: TokenAmount) {
        self.state().credit(owner, token, amount);
    }

    /// `owner`'s balance of `token`.
    pub fn balance_of(&self, owner: Address, token: Address) -> TokenAmount {
        self.state()
            .balances
            .get(&(owner, token))
            .copied()
            .unwrap_or_default()
    }

    /// Moves the chain's clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// Sum of the escrows of open jobs and the unsettled deposits of open sessions, per
    /// token.
    pub fn escrowed(&self, token: Address) -> TokenAmount {
        let state = self.state();
        let jobs = state
            .jobs
            .values()
            .filter(|j| j.token == token && j.status.is_open())
            .map(|j| j.amount);
        let sessions = state
            .sessions
            .values()
            .filter(|s| s.token == token && s.status.is_open())
            .map(|s| s.unsettled());
        jobs.chain(sessions).fold(TokenAmount::ZERO, |sum, amount| {
            sum.checked_add(amount).unwrap_or(sum)
        })
    }

    /// Fees accrued for the treasury in `token`.
    pub fn accrued_fees(&self, token: Address) -> TokenAmount {
        self.balance_of(self.treasury, token)
    }

    fn clock(&self) -> u64 {
        unix_now() + self.offset.load(Ordering::SeqCst)
    }

    /// A host claims a job (what a real host's `claimJob` does).
    pub fn claim(&self, job: JobId, host: Address) -> Result<()> {
        let mut state = self.state();
        let entry = state.job(job)?;
        if entry.status != JobStatus::Posted {
            return Err(reverted(Revert::InvalidJobStatus {
                job,
                status: entry.status,
            }));
        }
        if let Some(assigned) = entry.host.filter(|h| *h != host) {
            return Err(reverted(Revert::NotAssignedHost {
                job,
                assigned,
                caller: host,
            }));
        }
        if let Some(j) = state.jobs.get_mut(&job) {
            j.status = JobStatus::Claimed;
            j.host = Some(host);
        }
        Ok(())
    }

    /// The claiming host submits a result with the client's receipt and the escrow is settled
    /// for the receipt's tokens (the contract's rules: the client's signature over the
    /// EIP-712 receipt for this chain and marketplace).
    pub fn submit(
        &self,
        job: JobId,
        host: Address,
        cid: &Cid,
        receipt: &SignedReceipt,
    ) -> Result<()> {
        let tokens_used = receipt.tokens;
        let domain = ReceiptDomain {
            chain_id: self.chain_id,
            marketplace: MARKETPLACE,
        };
        let mut state = self.state();
        let entry = state.job(job)?;
        let signer = receipt.receipt(job).signer(&domain, &receipt.signature);
        if signer.ok() != Some(entry.client) {
            return Err(reverted(Revert::InvalidReceipt(job)));
        }
        if !entry.status.is_claimed() {
            return Err(reverted(Revert::InvalidJobStatus {
                job,
                status: entry.status,
            }));
        }
        let settle_by = entry.settle_by(&RULES);
        if self.clock() > settle_by {
            return Err(reverted(Revert::DeadlinePassed {
                job,
                deadline: settle_by,
            }));
        }
        if tokens_used > u64::from(entry.details.max_tokens) {
            return Err(reverted(Revert::TokensExceedMax {
                job,
                tokens_used: tokens_used.into(),
                max_tokens: entry.details.max_tokens,
            }));
        }
        if entry.host != Some(host) {
            return Err(reverted(Revert::NotClaimer {
                job,
                claimer: entry.host.unwrap_or_default(),
                caller: host,
            }));
        }
        let cost = entry
            .details
            .price_per_token
            .checked_mul(tokens_used)
            .unwrap_or(entry.amount)
            .min(entry.amount);
        let fee = TokenAmount(cost.base_units() * entry.fee_bps / 10_000);
        let paid = cost.checked_sub(fee).unwrap_or_default();
        let refund = entry.amount.checked_sub(cost).unwrap_or_default();
        // As on chain: the host's earnings are credited, the fee accrues, the refund is sent.
        let earned = state.credits.entry((host, entry.token)).or_default();
        *earned = earned.checked_add(paid).unwrap_or(*earned);
        for (to, amount) in [(self.treasury, fee), (entry.client, refund)] {
            state.credit(to, entry.token, amount);
        }
        state.set_status(job, JobStatus::Completed);
        state.outcomes.insert(
            job,
            JobOutcome::Settled(JobSettlement {
                host,
                result_cid: Some(*cid),
                transcript: receipt.transcript,
                tokens_used,
                paid,
                fee,
                refund,
            }),
        );
        Ok(())
    }

    fn refund(&self, job: JobId, reason: RefundReason, caller: Address) -> Result<()> {
        let now = self.clock();
        let mut state = self.state();
        let entry = state.job(job)?;
        let allowed = match reason {
            RefundReason::Expired => entry.status.is_open(),
            _ => entry.status == JobStatus::Posted,
        };
        if !allowed {
            return Err(reverted(Revert::InvalidJobStatus {
                job,
                status: entry.status,
            }));
        }
        let settle_by = entry.settle_by(&RULES);
        if reason == RefundReason::Expired && now <= settle_by {
            return Err(reverted(Revert::DeadlineNotReached {
                job,
                deadline: settle_by,
            }));
        }
        if reason == RefundReason::Cancelled && caller != entry.client {
            return Err(reverted(Revert::NotClient {
                job,
                client: entry.client,
                caller,
            }));
        }
        state.credit(entry.client, entry.token, entry.amount);
        let status = match reason {
            RefundReason::Expired => JobStatus::Expired,
            RefundReason::Cancelled => JobStatus::Cancelled,
            RefundReason::Released => JobStatus::Released,
        };
        state.set_status(job, status);
        state.outcomes.insert(
            job,
            JobOutcome::Refunded {
                reason,
                amount: entry.amount,
            },
        );
        Ok(())
    }
}

#[async_trait]
impl ChainLayer for InMemoryChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn marketplace(&self) -> Address {
        MARKETPLACE
    }

    fn token(&self, symbol_or_address: &str) -> Result<PaymentToken> {
        self.tokens
            .iter()
            .find(|t| {
                t.symbol.eq_ignore_ascii_case(symbol_or_address)
                    || format!("{:#x}", t.address()).eq_ignore_ascii_case(symbol_or_address)
            })
            .cloned()
            .ok_or_else(|| {
                fabstir_payments::Error::TokenNotAccepted(symbol_or_address.into()).into()
            })
    }

    async fn now(&self) -> Result<u64> {
        Ok(self.clock())
    }

    async fn rules(&self) -> Result<MarketRules> {
        Ok(RULES)
    }

    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        Ok(self.balance_of(owner, token.address()))
    }

    async fn credit(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        Ok(self
            .state()
            .credits
            .get(&(owner, token.address()))
            .copied()
            .unwrap_or_default())
    }

    async fn withdraw_credit(&self, token: &PaymentToken, key: &SigningKey) -> Result<TokenAmount> {
        let owner = address_of(key);
        let mut state = self.state();
        let owed = state
            .credits
            .remove(&(owner, token.address()))
            .unwrap_or_default();
        state.credit(owner, token.address(), owed);
        Ok(owed)
    }

    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<JobId> {
        let client = address_of(key);
        let token = payment.token.address();
        let price = details.price_per_token;
        if price == TokenAmount::ZERO {
            return Err(reverted(Revert::ZeroPrice));
        }
        let expected = details.escrow_amount().ok_or(Error::EscrowOverflow)?;
        if payment.amount != expected {
            return Err(reverted(Revert::WrongAmount {
                expected: expected.base_units(),
                amount: payment.amount.base_units(),
            }));
        }
        let now = self.clock();
        if details.deadline < now + RULES.min_job_duration {
            return Err(reverted(Revert::InvalidDeadline {
                deadline: details.deadline,
                now: now.into(),
            }));
        }
        let mut state = self.state();
        state.take(client, payment)?;
        let job = JobId(state.next_job);
        state.next_job += 1;
        state.jobs.insert(
            job,
            OnChainJob {
                id: job,
                client,
                host: requirements.assigned_host,
                token,
                amount: payment.amount,
                details: details.clone(),
                status: JobStatus::Posted,
                fee_bps: FEE_BPS,
            },
        );
        Ok(job)
    }

    async fn job(&self, id: JobId) -> Result<OnChainJob> {
        self.state().job(id)
    }

    async fn cancel_job(&self, id: JobId, key: &SigningKey) -> Result<()> {
        self.refund(id, RefundReason::Cancelled, address_of(key))
    }

    async fn request_close(&self, id: JobId, key: &SigningKey) -> Result<()> {
        let caller = address_of(key);
        let now = self.clock();
        let mut state = self.state();
        let entry = state.job(id)?;
        if entry.status != JobStatus::Claimed {
            return Err(reverted(Revert::InvalidJobStatus {
                job: id,
                status: entry.status,
            }));
        }
        if caller != entry.client {
            return Err(reverted(Revert::NotClient {
                job: id,
                client: entry.client,
                caller,
            }));
        }
        let settle_by = (now + RULES.close_window).min(entry.settle_by(&RULES));
        if let Some(j) = state.jobs.get_mut(&id) {
            j.status = JobStatus::Closing;
            j.details.deadline = settle_by;
        }
        Ok(())
    }

    async fn expire_job(&self, id: JobId, key: &SigningKey) -> Result<()> {
        self.refund(id, RefundReason::Expired, address_of(key))
    }

    async fn job_outcome(&self, id: JobId) -> Result<Option<JobOutcome>> {
        Ok(self.state().outcomes.get(&id).cloned())
    }

    async fn open_session(
        &self,
        details: &SessionDetails,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<SessionId> {
        self.open_session_now(details, payment, key)
    }

    async fn session(&self, id: SessionId) -> Result<OnChainSession> {
        self.state().session(id)
    }

    async fn top_up_session(
        &self,
        id: SessionId,
        amount: TokenAmount,
        key: &SigningKey,
    ) -> Result<()> {
        self.top_up_session_now(id, amount, key)
    }

    async fn request_session_close(&self, id: SessionId, key: &SigningKey) -> Result<()> {
        self.request_session_close_now(id, key)
    }

    async fn expire_session(&self, id: SessionId, _key: &SigningKey) -> Result<()> {
        self.expire_session_now(id)
    }

    async fn sessions_of(&self, client: Address) -> Result<Vec<OnChainSession>> {
        let mut found: Vec<OnChainSession> = self
            .state()
            .sessions
            .values()
            .filter(|s| s.client == client)
            .cloned()
            .collect();
        // Ids grow with the block they were opened in: the order they were opened.
        found.sort_by_key(|s| s.id);
        Ok(found)
    }
}
