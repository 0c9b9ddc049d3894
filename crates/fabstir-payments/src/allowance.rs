//! Allowance policy: how much to approve ([`ApprovalPolicy`]), one approval in flight per
//! owner and token, and the allowance reserved by jobs between their approval check and their
//! post, so that concurrent jobs never count the same allowance twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex};

use dashmap::DashMap;
use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, U256};
use fabstir_contracts::{HeadlessContractManager, TxInfo};
use fabstir_core::{PaymentToken, TokenAmount};
use tokio::sync::{Mutex, MutexGuard};

use crate::cache::Caches;
use crate::nonce::NonceBook;
use crate::{Error, Result};

/// How much to approve when an allowance is too small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ApprovalPolicy {
    /// Exactly what the pending jobs need; the next job approves again.
    #[default]
    Exact,
    /// At least this much per token (base units), so later jobs reuse the allowance; tokens
    /// not listed are approved exactly.
    Cap(BTreeMap<Address, TokenAmount>),
    /// The maximum (`2^256 - 1`): one approval for ever.
    Unlimited,
}

impl ApprovalPolicy {
    fn target(&self, token: Address, needed: U256) -> U256 {
        match self {
            ApprovalPolicy::Exact => needed,
            ApprovalPolicy::Cap(caps) => caps
                .get(&token)
                .map_or(needed, |cap| cap.base_units().max(needed)),
            ApprovalPolicy::Unlimited => U256::MAX,
        }
    }
}

/// Approvals of one owner and token: one approval in flight, and the allowance reserved by
/// jobs being posted.
#[derive(Debug, Default)]
pub(crate) struct ApprovalSlot {
    approving: Mutex<()>,
    reserved: StdMutex<U256>,
}

impl ApprovalSlot {
    /// Holds off other approvals and reservations of this owner and token.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, ()> {
        self.approving.lock().await
    }

    /// The allowance jobs being posted have reserved.
    pub(crate) fn reserved(&self) -> U256 {
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn adjust(&self, f: impl FnOnce(U256) -> U256) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        *reserved = f(*reserved);
    }
}

/// Allowance held for a job between its approval check and its post.
#[derive(Debug)]
pub(crate) struct Reservation {
    slot: Arc<ApprovalSlot>,
    owner: Address,
    spender: Address,
    token: Address,
    amount: U256,
}

/// The approval state of a payment manager: a slot per owner and token, and the tokens known
/// to refuse changing a non-zero allowance.
#[derive(Debug)]
pub(crate) struct Approvals {
    policy: ApprovalPolicy,
    slots: DashMap<(Address, Address), Arc<ApprovalSlot>>,
    zero_first: DashMap<Address, ()>,
}

impl Approvals {
    /// No approvals yet; new ones follow `policy`.
    pub(crate) fn new(policy: ApprovalPolicy) -> Self {
        Self {
            policy,
            slots: DashMap::new(),
            zero_first: DashMap::new(),
        }
    }

    /// The slot of `owner` and `token`.
    pub(crate) fn slot(&self, owner: Address, token: Address) -> Arc<ApprovalSlot> {
        self.slots.entry((owner, token)).or_default().clone()
    }

    /// Reserves `amount` of allowance for a job about to be posted, approving first if the
    /// allowance less other reservations falls short. One approval per owner and token runs
    /// at a time; the others wait for it and then reuse it.
    pub(crate) async fn reserve<M, W>(
        &self,
        contracts: &HeadlessContractManager,
        caches: &Caches,
        nonces: &NonceBook,
        token: &PaymentToken,
        amount: TokenAmount,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<(Reservation, Vec<TxInfo>)>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let owner = signer.address();
        let address = token.address();
        let spender = contracts.payment_spender();
        let slot = self.slot(owner, address);
        let _approving = slot.lock().await;
        let needed = slot
            .reserved()
            .checked_add(amount.base_units())
            .ok_or(Error::EscrowOverflow)?;
        let current = caches
            .allowance(contracts, owner, spender, token)
            .await?
            .base_units();
        let mut sent = Vec::new();
        if current < needed {
            let target = TokenAmount(self.policy.target(address, needed));
            let sender = nonces.wrap(signer.clone(), owner);
            if !current.is_zero() && self.zero_first.contains_key(&address) {
                sent.push(
                    contracts
                        .approve(address, spender, TokenAmount::ZERO, &sender)
                        .await?,
                );
            }
            match contracts.approve(address, spender, target, &sender).await {
                Ok(tx) => sent.push(tx),
                Err(first) if !current.is_zero() && sent.is_empty() => {
                    // Tokens like USDT refuse to change a non-zero allowance; the refusal
                    // shows at gas estimation, so nothing was spent. Go through zero.
                    tracing::debug!(%address, error = %first, "approval from non-zero refused; resetting to zero first");
                    self.zero_first.insert(address, ());
                    sent.push(
                        contracts
                            .approve(address, spender, TokenAmount::ZERO, &sender)
                            .await?,
                    );
                    sent.push(contracts.approve(address, spender, target, &sender).await?);
                }
                Err(e) => {
                    caches.forget_allowance(owner, spender, address).await;
                    return Err(e.into());
                }
            }
            caches.set_allowance(owner, spender, address, target).await;
            if let Some(last) = sent.last() {
                caches.observe_block(last.block);
            }
        }
        slot.adjust(|r| r + amount.base_units());
        Ok((
            Reservation {
                slot: slot.clone(),
                owner,
                spender,
                token: address,
                amount: amount.base_units(),
            },
            sent,
        ))
    }
}

impl Reservation {
    /// Ends a reservation after its post: the on-chain allowance changed, so the cached one
    /// is dropped together with the reservation (under the approval lock, so a concurrent
    /// reservation never counts the job twice).
    pub(crate) async fn release(self, caches: &Caches) {
        let _approving = self.slot.lock().await;
        caches
            .forget_allowance(self.owner, self.spender, self.token)
            .await;
        self.slot.adjust(|r| r.saturating_sub(self.amount));
    }
}
