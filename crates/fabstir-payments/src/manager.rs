//! [`PaymentManager`]: the cheap handle whose clones share the caches, the approval state and
//! the nonce counters. How it pays for a job is in [`routing`](crate::routing); how much it
//! approves in [`allowance`](crate::allowance); what it caches in [`cache`](crate::cache).

use std::sync::Arc;
use std::time::Duration;

use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::Address;
use fabstir_contracts::{HeadlessContractManager, TxInfo};
use fabstir_core::{PaymentToken, TokenAmount};

use crate::Result;
use crate::allowance::{ApprovalPolicy, Approvals};
use crate::cache::Caches;
use crate::nonce::NonceBook;
use crate::registry::TokenRegistry;

/// Settings of a [`PaymentManager`].
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// How much to approve.
    pub approval: ApprovalPolicy,
    /// Use EIP-2612 permit (one transaction) for tokens that support it when the existing
    /// allowance does not cover the job.
    pub prefer_permit: bool,
    /// How long a permit signature is valid.
    pub permit_validity: Duration,
    /// How often the block number is polled to expire cached balances.
    pub block_poll_interval: Duration,
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self {
            approval: ApprovalPolicy::Exact,
            prefer_permit: true,
            permit_validity: Duration::from_secs(3600),
            block_poll_interval: Duration::from_secs(1),
        }
    }
}

/// What the clones of one manager share.
pub(crate) struct Inner {
    pub(crate) contracts: HeadlessContractManager,
    pub(crate) registry: TokenRegistry,
    pub(crate) config: PaymentConfig,
    pub(crate) caches: Arc<Caches>,
    pub(crate) approvals: Approvals,
    pub(crate) nonces: NonceBook,
}

/// Pays for jobs in ETH or ERC-20 tokens. Cheap to clone; clones share caches and nonce
/// counters. Holds no signer: each spending call takes one.
#[derive(Clone)]
pub struct PaymentManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for PaymentManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentManager")
            .field("chain_id", &self.inner.registry.chain_id())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PaymentManager {
    /// A manager over `contracts` for the tokens of `registry`.
    pub fn new(
        contracts: HeadlessContractManager,
        registry: TokenRegistry,
        config: PaymentConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                contracts,
                registry,
                caches: Arc::new(Caches::new(config.block_poll_interval)),
                approvals: Approvals::new(config.approval.clone()),
                config,
                nonces: NonceBook::new(),
            }),
        }
    }

    /// The token registry.
    pub fn registry(&self) -> &TokenRegistry {
        &self.inner.registry
    }

    /// The contract manager underneath.
    pub fn contracts(&self) -> &HeadlessContractManager {
        &self.inner.contracts
    }

    /// `owner`'s balance of `token`, cached for the current block (a new block, or a
    /// transaction of this manager, refreshes it). Concurrent reads share one RPC call.
    pub async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        let inner = &self.inner;
        inner
            .caches
            .balance(&inner.contracts, owner, token.address())
            .await
    }

    /// How much `spender` may move of `owner`'s `token`, cached until this manager changes it
    /// (its own approvals and posts).
    pub async fn allowance(
        &self,
        owner: Address,
        spender: Address,
        token: &PaymentToken,
    ) -> Result<TokenAmount> {
        let inner = &self.inner;
        inner
            .caches
            .allowance(&inner.contracts, owner, spender, token)
            .await
    }

    /// Makes sure the escrow may move `amount` of `token` from the signer, approving (per the
    /// [`ApprovalPolicy`]) only when the current allowance, less what jobs being posted have
    /// reserved, falls short. Returns the approvals sent (none, one, or two for tokens that
    /// require a zero allowance first).
    pub async fn ensure_allowance<M, W>(
        &self,
        token: &PaymentToken,
        amount: TokenAmount,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<Vec<TxInfo>>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let inner = &self.inner;
        let (_reservation, sent) = inner
            .approvals
            .reserve(
                &inner.contracts,
                &inner.caches,
                &inner.nonces,
                token,
                amount,
                signer,
            )
            .await?;
        Ok(sent)
    }

    /// Tells the manager a block was mined (for instance one holding a transaction sent
    /// around it, such as a cancel or an expiry): balances cached for older blocks are not used
    /// again.
    pub fn observe_block(&self, block: u64) {
        self.inner.caches.observe_block(block);
    }
}
