//! The payment manager's caches: what the chain says about each token (read once), balances
//! per block, and allowances until this manager changes them; with the block number that ages
//! the balances, kept fresh by a watcher task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use ethers::providers::Middleware;
use ethers::types::{Address, U256};
use fabstir_contracts::HeadlessContractManager;
use fabstir_core::{PaymentToken, TokenAmount};
use moka::future::Cache;
use tokio::task::JoinHandle;

use crate::error::{contract_error, unshare};
use crate::{Error, Result};

/// What the chain says about a token, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenFacts {
    /// The marketplace accepts it for payment.
    pub(crate) accepted: bool,
    /// It answers EIP-2612 `nonces` and `DOMAIN_SEPARATOR`.
    pub(crate) permit: bool,
}

/// Balances are keyed by (owner, token, block); allowances by (owner, spender, token).
pub(crate) struct Caches {
    facts: Cache<Address, TokenFacts>,
    balances: Cache<(Address, Address, u64), TokenAmount>,
    allowances: Cache<(Address, Address, Address), TokenAmount>,
    block: AtomicU64,
    poll_interval: Duration,
    watcher: StdMutex<Option<JoinHandle<()>>>,
}

impl Drop for Caches {
    fn drop(&mut self) {
        if let Some(handle) = self.watcher.get_mut().ok().and_then(Option::take) {
            handle.abort();
        }
    }
}

impl Caches {
    /// Empty caches whose block watcher, once started, polls every `poll_interval`.
    pub(crate) fn new(poll_interval: Duration) -> Self {
        Self {
            facts: Cache::builder().max_capacity(256).build(),
            balances: Cache::builder().max_capacity(10_000).build(),
            allowances: Cache::builder().max_capacity(10_000).build(),
            block: AtomicU64::new(0),
            poll_interval,
            watcher: StdMutex::new(None),
        }
    }

    /// `owner`'s balance of `token` at the current block. Concurrent reads share one RPC call.
    pub(crate) async fn balance(
        self: &Arc<Self>,
        contracts: &HeadlessContractManager,
        owner: Address,
        token: Address,
    ) -> Result<TokenAmount> {
        let block = self.current_block(contracts).await?;
        load(&self.balances, (owner, token, block), async move {
            contracts.balance_of(token, owner).await
        })
        .await
    }

    /// How much `spender` may move of `owner`'s `token` (everything, for the native token).
    pub(crate) async fn allowance(
        &self,
        contracts: &HeadlessContractManager,
        owner: Address,
        spender: Address,
        token: &PaymentToken,
    ) -> Result<TokenAmount> {
        if token.is_native() {
            return Ok(TokenAmount(U256::MAX));
        }
        let token = token.address();
        load(&self.allowances, (owner, spender, token), async move {
            contracts.allowance(token, owner, spender).await
        })
        .await
    }

    /// Records the allowance this manager just approved.
    pub(crate) async fn set_allowance(
        &self,
        owner: Address,
        spender: Address,
        token: Address,
        amount: TokenAmount,
    ) {
        self.allowances
            .insert((owner, spender, token), amount)
            .await;
    }

    /// Forgets an allowance the chain may have changed.
    pub(crate) async fn forget_allowance(&self, owner: Address, spender: Address, token: Address) {
        self.allowances.invalidate(&(owner, spender, token)).await;
    }

    /// Reads, once, what the chain says about a token and checks it against the registry's
    /// symbol and decimals.
    pub(crate) async fn facts(
        &self,
        contracts: &HeadlessContractManager,
        token: &PaymentToken,
    ) -> Result<TokenFacts> {
        let address = token.address();
        self.facts
            .try_get_with(address, async move {
                let accepted = contracts.is_token_accepted(address).await?;
                if token.is_native() {
                    return Ok(TokenFacts {
                        accepted,
                        permit: false,
                    });
                }
                let erc20 = contracts.erc20(address);
                let decimals = erc20.decimals().call().await.map_err(contract_error)?;
                let symbol = erc20.symbol().call().await.map_err(contract_error)?;
                if decimals != token.decimals || symbol != token.symbol {
                    return Err(Error::token_mismatch(
                        address,
                        (&token.symbol, token.decimals),
                        (&symbol, decimals),
                    ));
                }
                // EIP-2612 tokens answer `nonces(owner)` and expose their EIP-712 domain.
                let permit = erc20.nonces(Address::zero()).call().await.is_ok()
                    && erc20.domain_separator().call().await.is_ok();
                Ok(TokenFacts { accepted, permit })
            })
            .await
            .map_err(unshare)
    }

    /// The block balances are cached for. Starts the block watcher on first use.
    async fn current_block(self: &Arc<Self>, contracts: &HeadlessContractManager) -> Result<u64> {
        let known = self.block.load(Ordering::SeqCst);
        if known != 0 {
            return Ok(known);
        }
        let block = contracts
            .provider()
            .get_block_number()
            .await
            .map_err(|e| fabstir_contracts::Error::Rpc(e.to_string()))?
            .as_u64();
        self.observe_block(block.max(1));
        self.start_watcher(contracts);
        Ok(self.block.load(Ordering::SeqCst))
    }

    /// A block was mined: balances cached for older blocks are not used again.
    pub(crate) fn observe_block(&self, block: u64) {
        let previous = self.block.fetch_max(block, Ordering::SeqCst);
        if block > previous && previous != 0 {
            // Entries keyed by older blocks can never be hit again.
            self.balances.invalidate_all();
        }
    }

    fn start_watcher(self: &Arc<Self>, contracts: &HeadlessContractManager) {
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if watcher.is_some() {
            return;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        let provider = contracts.provider().clone();
        let interval = self.poll_interval;
        *watcher = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(caches) = weak.upgrade() else { return };
                match provider.get_block_number().await {
                    Ok(block) => caches.observe_block(block.as_u64()),
                    Err(e) => tracing::debug!(error = %e, "block poll failed"),
                }
            }
        }));
    }
}

/// The cached amount under `key`, loaded once by `read` for all concurrent callers.
async fn load<K>(
    cache: &Cache<K, TokenAmount>,
    key: K,
    read: impl Future<Output = fabstir_contracts::Result<TokenAmount>>,
) -> Result<TokenAmount>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    cache
        .try_get_with(key, async move { read.await.map_err(Error::from) })
        .await
        .map_err(unshare)
}
