//! [`PaymentManager`]: routes a job's payment through ETH, approve-then-post or permit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, U256};
use fabstir_contracts::bindings::test_usdc::TestUSDC;
use fabstir_contracts::{HeadlessContractManager, PostedJob, TxInfo};
use fabstir_core::{JobDetails, JobRequirements, PaymentToken, TokenAmount};
use moka::future::Cache;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::nonce::NonceBook;
use crate::registry::TokenRegistry;
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

/// What a job pays (the core type, re-exported: the SDK's chain port speaks it too).
pub use fabstir_core::JobPayment;

/// Which path paid for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    /// `postJob{value}`.
    Eth,
    /// `postJobWithToken`, with an approval first if `approval` is set.
    Token {
        /// The approval sent for this job, if one was needed.
        approval: bool,
    },
    /// `postJobWithPermit`: one transaction.
    Permit,
}

/// The outcome of [`PaymentManager::submit_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The posted job.
    pub posted: PostedJob,
    /// How it was paid.
    pub method: PaymentMethod,
    /// Every transaction sent for it, in order (approvals first, the post last).
    pub transactions: Vec<TxInfo>,
}

/// What the chain says about a token, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenFacts {
    accepted: bool,
    permit: bool,
}

/// Approvals of one owner and token: one approval in flight, and the allowance reserved by
/// jobs being posted.
#[derive(Debug, Default)]
struct ApprovalSlot {
    approving: Mutex<()>,
    reserved: StdMutex<U256>,
}

impl ApprovalSlot {
    fn reserved(&self) -> U256 {
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn adjust(&self, f: impl FnOnce(U256) -> U256) {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        *reserved = f(*reserved);
    }
}

struct Inner {
    contracts: HeadlessContractManager,
    registry: TokenRegistry,
    config: PaymentConfig,
    facts: Cache<Address, TokenFacts>,
    balances: Cache<(Address, Address, u64), TokenAmount>,
    allowances: Cache<(Address, Address, Address), TokenAmount>,
    slots: DashMap<(Address, Address), Arc<ApprovalSlot>>,
    zero_first: DashMap<Address, ()>,
    nonces: NonceBook,
    block: AtomicU64,
    watcher: StdMutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(handle) = self.watcher.get_mut().ok().and_then(Option::take) {
            handle.abort();
        }
    }
}

/// Pays for jobs in ETH or ERC-20 tokens. Cheap to clone; clones share caches and nonce
/// counters. Holds no signer: each spending call takes one.
#[derive(Clone)]
pub struct PaymentManager {
    inner: Arc<Inner>,
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
                config,
                facts: Cache::builder().max_capacity(256).build(),
                balances: Cache::builder().max_capacity(10_000).build(),
                allowances: Cache::builder().max_capacity(10_000).build(),
                slots: DashMap::new(),
                zero_first: DashMap::new(),
                nonces: NonceBook::new(),
                block: AtomicU64::new(0),
                watcher: StdMutex::new(None),
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
        let block = self.current_block().await?;
        let contracts = &self.inner.contracts;
        let address = token.address();
        self.inner
            .balances
            .try_get_with((owner, address, block), async move {
                contracts
                    .balance_of(address, owner)
                    .await
                    .map_err(Error::from)
            })
            .await
            .map_err(unshare)
    }

    /// How much `spender` may move of `owner`'s `token`, cached until this manager changes it
    /// (its own approvals and posts).
    pub async fn allowance(
        &self,
        owner: Address,
        spender: Address,
        token: &PaymentToken,
    ) -> Result<TokenAmount> {
        if token.is_native() {
            return Ok(TokenAmount(U256::MAX));
        }
        let contracts = &self.inner.contracts;
        let address = token.address();
        self.inner
            .allowances
            .try_get_with((owner, spender, address), async move {
                contracts
                    .allowance(address, owner, spender)
                    .await
                    .map_err(Error::from)
            })
            .await
            .map_err(unshare)
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
        let (_reservation, sent) = self.reserve(token, amount, signer).await?;
        Ok(sent)
    }

    /// Posts a job and pays for it, choosing the path by token:
    ///
    /// - ETH: balance check, then `postJob{value}` (one transaction);
    /// - ERC-20 whose allowance covers the job: `postJobWithToken` (one transaction);
    /// - ERC-20 with EIP-2612 permit (and `prefer_permit`): `postJobWithPermit` (one);
    /// - other ERC-20: approve, then `postJobWithToken` (two).
    ///
    /// Nothing is sent when the token is unknown or not accepted, or the balance is short.
    pub async fn submit_job<M, W>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<Submission>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let token = self.check_token(&payment.token).await?;
        let owner = signer.address();
        self.check_balance(owner, &token, payment.amount).await?;
        let sender = self.inner.nonces.wrap(signer.clone(), owner);
        let contracts = &self.inner.contracts;

        if token.is_native() {
            let posted = contracts
                .post_job(details, requirements, payment.amount, &sender)
                .await;
            let posted = self.after_send(owner, posted).await?;
            return Ok(Submission {
                transactions: vec![posted.tx],
                posted,
                method: PaymentMethod::Eth,
            });
        }

        let address = token.address();
        let facts = self.facts(&token).await?;
        if facts.permit && self.inner.config.prefer_permit {
            let slot = self.slot(owner, address);
            let _approving = slot.approving.lock().await;
            let spender = self.inner.contracts.payment_spender();
            let covered = self.allowance(owner, spender, &token).await?.base_units()
                >= slot.reserved() + payment.amount.base_units();
            // A permit sets the allowance; it must not overwrite one that jobs in flight use.
            if !covered && slot.reserved().is_zero() {
                let deadline = unix_now() + self.inner.config.permit_validity.as_secs();
                let signature = contracts
                    .sign_permit(address, spender, payment.amount, deadline, signer.signer())
                    .await?;
                let posted = contracts
                    .post_job_with_permit_signature(
                        details,
                        requirements,
                        address,
                        payment.amount,
                        deadline,
                        &signature,
                        &sender,
                    )
                    .await;
                self.inner
                    .allowances
                    .invalidate(&(owner, spender, address))
                    .await;
                let posted = self.after_send(owner, posted).await?;
                return Ok(Submission {
                    transactions: vec![posted.tx],
                    posted,
                    method: PaymentMethod::Permit,
                });
            }
        }

        let (reservation, mut transactions) = self.reserve(&token, payment.amount, signer).await?;
        let posted = contracts
            .post_job_with_token(details, requirements, address, payment.amount, &sender)
            .await;
        self.release(reservation).await;
        let posted = self.after_send(owner, posted).await?;
        let approval = !transactions.is_empty();
        transactions.push(posted.tx);
        Ok(Submission {
            posted,
            method: PaymentMethod::Token { approval },
            transactions,
        })
    }

    /// Checks that the token is in the registry and accepted on chain, with the registry's
    /// symbol and decimals; returns the registry's entry.
    async fn check_token(&self, token: &PaymentToken) -> Result<PaymentToken> {
        let known = self
            .inner
            .registry
            .by_address(token.address())
            .ok_or_else(|| Error::TokenNotAccepted(token.to_string()))?
            .clone();
        if known.decimals != token.decimals || known.symbol != token.symbol {
            return Err(Error::TokenMismatch {
                address: token.address(),
                expected: describe(&known.symbol, known.decimals),
                actual: describe(&token.symbol, token.decimals),
            });
        }
        if !self.facts(&known).await?.accepted {
            return Err(Error::TokenNotAccepted(known.to_string()));
        }
        Ok(known)
    }

    async fn check_balance(
        &self,
        owner: Address,
        token: &PaymentToken,
        need: TokenAmount,
    ) -> Result<()> {
        let have = self.balance(owner, token).await?;
        if have < need {
            return Err(Error::InsufficientBalance {
                symbol: token.symbol.clone(),
                need: token.format_amount(need),
                have: token.format_amount(have),
            });
        }
        Ok(())
    }

    /// Reads, once, what the chain says about a token and checks it against the registry.
    async fn facts(&self, token: &PaymentToken) -> Result<TokenFacts> {
        let inner = &self.inner;
        let address = token.address();
        inner
            .facts
            .try_get_with(address, async move {
                let accepted = inner.contracts.is_token_accepted(address).await?;
                if token.is_native() {
                    return Ok(TokenFacts {
                        accepted,
                        permit: false,
                    });
                }
                let erc20 = TestUSDC::new(address, inner.contracts.provider().clone());
                let decimals = erc20.decimals().call().await.map_err(contract_error)?;
                let symbol = erc20.symbol().call().await.map_err(contract_error)?;
                if decimals != token.decimals || symbol != token.symbol {
                    return Err(Error::TokenMismatch {
                        address,
                        expected: describe(&token.symbol, token.decimals),
                        actual: describe(&symbol, decimals),
                    });
                }
                // EIP-2612 tokens answer `nonces(owner)` and expose their EIP-712 domain.
                let permit = erc20.nonces(Address::zero()).call().await.is_ok()
                    && erc20.domain_separator().call().await.is_ok();
                Ok(TokenFacts { accepted, permit })
            })
            .await
            .map_err(unshare)
    }

    fn slot(&self, owner: Address, token: Address) -> Arc<ApprovalSlot> {
        self.inner.slots.entry((owner, token)).or_default().clone()
    }

    /// Reserves `amount` of allowance for a job about to be posted, approving first if the
    /// allowance less other reservations falls short. One approval per owner and token runs
    /// at a time; the others wait for it and then reuse it.
    async fn reserve<M, W>(
        &self,
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
        let spender = self.inner.contracts.payment_spender();
        let slot = self.slot(owner, address);
        let _approving = slot.approving.lock().await;
        let needed = slot
            .reserved()
            .checked_add(amount.base_units())
            .ok_or(Error::EscrowOverflow)?;
        let current = self.allowance(owner, spender, token).await?.base_units();
        let mut sent = Vec::new();
        if current < needed {
            let target = TokenAmount(self.inner.config.approval.target(address, needed));
            let sender = self.inner.nonces.wrap(signer.clone(), owner);
            let contracts = &self.inner.contracts;
            if !current.is_zero() && self.inner.zero_first.contains_key(&address) {
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
                    self.inner.zero_first.insert(address, ());
                    sent.push(
                        contracts
                            .approve(address, spender, TokenAmount::ZERO, &sender)
                            .await?,
                    );
                    sent.push(contracts.approve(address, spender, target, &sender).await?);
                }
                Err(e) => {
                    self.inner
                        .allowances
                        .invalidate(&(owner, spender, address))
                        .await;
                    return Err(e.into());
                }
            }
            self.inner
                .allowances
                .insert((owner, spender, address), target)
                .await;
            if let Some(last) = sent.last() {
                self.observe_block(last.block);
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

    /// Ends a reservation after its post: the on-chain allowance changed, so the cached one
    /// is dropped together with the reservation (under the approval lock, so a concurrent
    /// reservation never counts the job twice).
    async fn release(&self, reservation: Reservation) {
        let _approving = reservation.slot.approving.lock().await;
        self.inner
            .allowances
            .invalidate(&(reservation.owner, reservation.spender, reservation.token))
            .await;
        reservation
            .slot
            .adjust(|r| r.saturating_sub(reservation.amount));
    }

    /// Bookkeeping after this manager's post: the sender's balances are stale from the
    /// receipt's block on; a failed send resets the nonce counter.
    async fn after_send(
        &self,
        owner: Address,
        result: fabstir_contracts::Result<PostedJob>,
    ) -> Result<PostedJob> {
        match result {
            Ok(posted) => {
                self.observe_block(posted.tx.block);
                Ok(posted)
            }
            Err(e) => {
                self.inner.nonces.reset(owner).await;
                Err(e.into())
            }
        }
    }

    /// The block balances are cached for. Starts the block watcher on first use.
    async fn current_block(&self) -> Result<u64> {
        let known = self.inner.block.load(Ordering::SeqCst);
        if known != 0 {
            return Ok(known);
        }
        let block = self
            .inner
            .contracts
            .provider()
            .get_block_number()
            .await
            .map_err(|e| fabstir_contracts::Error::Rpc(e.to_string()))?
            .as_u64();
        self.observe_block(block.max(1));
        self.start_watcher();
        Ok(self.inner.block.load(Ordering::SeqCst))
    }

    /// Tells the manager a block was mined (for instance one holding a transaction sent
    /// around it, such as a cancel or an expiry): balances cached for older blocks are not used
    /// again.
    pub fn observe_block(&self, block: u64) {
        let previous = self.inner.block.fetch_max(block, Ordering::SeqCst);
        if block > previous && previous != 0 {
            // Entries keyed by older blocks can never be hit again.
            self.inner.balances.invalidate_all();
        }
    }

    fn start_watcher(&self) {
        let mut watcher = self.inner.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if watcher.is_some() {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.config.block_poll_interval;
        *watcher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                let manager = PaymentManager { inner };
                match manager.inner.contracts.provider().get_block_number().await {
                    Ok(block) => manager.observe_block(block.as_u64()),
                    Err(e) => tracing::debug!(error = %e, "block poll failed"),
                }
            }
        }));
    }
}

/// Allowance held for a job between its approval check and its post.
#[derive(Debug)]
struct Reservation {
    slot: Arc<ApprovalSlot>,
    owner: Address,
    spender: Address,
    token: Address,
    amount: U256,
}

fn describe(symbol: &str, decimals: u8) -> String {
    format!("{symbol}, {decimals} decimals")
}

fn contract_error<M: Middleware>(e: ethers::contract::ContractError<M>) -> Error {
    fabstir_contracts::Error::from_contract(e).into()
}

/// Unwraps an error shared by moka between the callers of one load, keeping the variants
/// callers match on.
fn unshare(e: Arc<Error>) -> Error {
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
            other => Error::Shared(other.to_string()),
        },
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
