//! [`HeadlessContractManager`]: addresses and a read-only provider; reads take no signer, and
//! every state-changing call takes the signer for that call and keeps nothing of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ethers::abi::Detokenize;
use ethers::contract::{ContractCall, EthEvent, parse_log};
use ethers::middleware::SignerMiddleware;
use ethers::providers::{Http, Middleware, Provider};
use ethers::signers::{LocalWallet, Signer as _};
use ethers::types::{Address, BlockNumber, Filter, TransactionReceipt, U256};
use fabstir_core::{ContractAddresses, Deployment, JobId, MarketRules, ModelId, TokenAmount};

use crate::bindings::job_marketplace::{JobMarketplace, JobPostedFilter, JobTerms, SessionTerms};
use crate::bindings::node_registry::NodeRegistry;
use crate::convert;
use crate::error::{Error, Result};
use crate::types::{JobStatus, OnChainJob, RegisteredNode, TxInfo};

/// A signing middleware built from a local key: what [`HeadlessContractManager::signer`]
/// returns. Any other `Middleware` that signs (a nonce manager around it, a remote signer)
/// works with the write methods too.
pub type WalletSigner = SignerMiddleware<Provider<Http>, LocalWallet>;

/// How the manager talks to the node.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// How often pending transactions and event subscriptions poll the node.
    pub poll_interval: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl ManagerConfig {
    /// Settings for a local chain such as anvil: poll every 20 ms.
    pub fn local() -> Self {
        Self {
            poll_interval: Duration::from_millis(20),
        }
    }
}

/// Stateless access to the Fabstir contracts on one chain.
///
/// It holds the contract addresses, the chain id and a read-only HTTP provider. Reads take no
/// signer; every state-changing method takes `signer: &Arc<S>` for that one call, where `S` is
/// any signing [`Middleware`] (for example [`WalletSigner`] from [`Self::signer`]). The only
/// thing it remembers is a bounded cache of job and session terms, which never change once read from the
/// chain and checked against the hash the marketplace stores (clones share it).
#[derive(Debug, Clone)]
pub struct HeadlessContractManager {
    provider: Arc<Provider<Http>>,
    addresses: ContractAddresses,
    chain_id: u64,
    terms: moka::future::Cache<u64, JobTerms>,
    session_terms: moka::future::Cache<u64, SessionTerms>,
}

impl HeadlessContractManager {
    /// Connects to `rpc_url` and checks that the node serves `deployment.chain_id`.
    pub async fn connect(
        rpc_url: &str,
        deployment: &Deployment,
        config: &ManagerConfig,
    ) -> Result<Self> {
        let manager = Self::connect_addresses(rpc_url, deployment.contracts, config).await?;
        if manager.chain_id != deployment.chain_id {
            return Err(Error::InvalidChainData(format!(
                "the node at {rpc_url} serves chain {}, the deployment is for chain {}",
                manager.chain_id, deployment.chain_id
            )));
        }
        Ok(manager)
    }

    /// Connects to `rpc_url` with explicit contract addresses, reading the chain id.
    pub async fn connect_addresses(
        rpc_url: &str,
        addresses: ContractAddresses,
        config: &ManagerConfig,
    ) -> Result<Self> {
        let provider = Provider::<Http>::try_from(rpc_url)
            .map_err(|e| Error::Rpc(format!("invalid RPC URL {rpc_url}: {e}")))?
            .interval(config.poll_interval);
        let chain_id = provider
            .get_chainid()
            .await
            .map_err(|e| Error::Rpc(format!("{rpc_url}: {e}")))?;
        Ok(Self::from_provider(
            Arc::new(provider),
            addresses,
            chain_id.low_u64(),
        ))
    }

    /// Builds a manager from an existing provider (no network call).
    pub fn from_provider(
        provider: Arc<Provider<Http>>,
        addresses: ContractAddresses,
        chain_id: u64,
    ) -> Self {
        Self {
            provider,
            addresses,
            chain_id,
            terms: moka::future::Cache::new(crate::terms::CACHED_JOBS),
            session_terms: moka::future::Cache::new(crate::terms::CACHED_JOBS),
        }
    }

    pub(crate) fn terms_cache(&self) -> &moka::future::Cache<u64, JobTerms> {
        &self.terms
    }

    pub(crate) fn session_terms_cache(&self) -> &moka::future::Cache<u64, SessionTerms> {
        &self.session_terms
    }

    /// The read-only provider.
    pub fn provider(&self) -> &Arc<Provider<Http>> {
        &self.provider
    }

    /// The contract addresses.
    pub fn addresses(&self) -> &ContractAddresses {
        &self.addresses
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The latest block's timestamp in unix seconds: the chain's "now", against which the
    /// contracts check deadlines.
    pub async fn latest_block_time(&self) -> Result<u64> {
        let block = self
            .provider
            .get_block(BlockNumber::Latest)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?
            .ok_or_else(|| Error::Rpc("the node has no latest block".into()))?;
        u64::try_from(block.timestamp).map_err(|_| {
            Error::InvalidChainData(format!("block timestamp {} overflows", block.timestamp))
        })
    }

    /// Wraps `wallet` (with this chain's id) in a signing middleware over this manager's
    /// provider, for the caller to pass to write methods. The manager keeps nothing of it.
    pub fn signer(&self, wallet: LocalWallet) -> Arc<WalletSigner> {
        Arc::new(SignerMiddleware::new(
            self.provider.as_ref().clone(),
            wallet.with_chain_id(self.chain_id),
        ))
    }

    pub(crate) fn marketplace_read(&self) -> JobMarketplace<Provider<Http>> {
        JobMarketplace::new(self.addresses.job_marketplace, self.provider.clone())
    }

    pub(crate) fn registry_read(&self) -> NodeRegistry<Provider<Http>> {
        NodeRegistry::new(self.addresses.node_registry, self.provider.clone())
    }

    // ----- job reads -----

    /// The job with this id; [`Error::JobNotFound`] when there is none. One call for its
    /// stored state; its terms come from its JobPosted (and JobClaimed) event the first time.
    /// While closing, the deadline is the end of the close window.
    pub async fn job(&self, id: JobId) -> Result<OnChainJob> {
        Ok(self.job_view(id).await?.to_job())
    }

    /// A job's status and deadline (while closing, the end of the close window): what a host
    /// re-reads when a stream opens.
    pub async fn job_status(&self, id: JobId) -> Result<(JobStatus, u64)> {
        let job = self.job(id).await?;
        Ok((job.status, job.details.deadline))
    }

    /// The ids of every job ever posted, from the JobPosted events since block 0: for tests
    /// and audits (public RPC providers refuse such ranges).
    pub async fn all_jobs(&self) -> Result<Vec<JobId>> {
        let filter = Filter::new()
            .address(self.addresses.job_marketplace)
            .topic0(JobPostedFilter::signature())
            .from_block(0u64);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        logs.into_iter()
            .map(|log| {
                let event: JobPostedFilter = parse_log(log)
                    .map_err(|e| Error::InvalidChainData(format!("JobPosted: {e}")))?;
                convert::job_id(event.job_id)
            })
            .collect()
    }

    /// The accepted payment tokens (the zero address is ETH).
    pub async fn accepted_tokens(&self) -> Result<Vec<Address>> {
        call(self.marketplace_read().accepted_tokens()).await
    }

    /// Whether `token` is accepted for payment (the zero address is ETH).
    pub async fn is_token_accepted(&self, token: Address) -> Result<bool> {
        call(self.marketplace_read().is_token_accepted(token)).await
    }

    /// The protocol fee in basis points.
    pub async fn fee_bps(&self) -> Result<u16> {
        call(self.marketplace_read().fee_bps()).await
    }

    /// Where protocol fees go.
    pub async fn treasury(&self) -> Result<Address> {
        call(self.marketplace_read().treasury()).await
    }

    /// The marketplace's time rules (immutable since its deployment).
    pub async fn market_rules(&self) -> Result<MarketRules> {
        let market = self.marketplace_read();
        Ok(MarketRules {
            min_job_duration: call(market.min_job_duration()).await?,
            submit_grace: call(market.submit_grace()).await?,
            close_window: call(market.close_window()).await?,
        })
    }

    /// Protocol fees accrued in `token` and not yet withdrawn by the treasury.
    pub async fn accrued_fees(&self, token: Address) -> Result<TokenAmount> {
        Ok(TokenAmount(
            call(self.marketplace_read().accrued_fees(token)).await?,
        ))
    }

    /// What the marketplace holds in `token` (the zero address is ETH): every open job's
    /// escrow, the credits and the accrued fees.
    pub async fn escrow_balance(&self, token: Address) -> Result<TokenAmount> {
        self.balance_of(token, self.addresses.job_marketplace).await
    }

    /// For every token, what the marketplace must hold: the amounts of open (posted, claimed
    /// or closing) jobs and the unsettled deposits of open sessions, plus credits (hosts' earnings and undeliverable refunds), plus fees
    /// accrued for the treasury. Reads every job, so it is meant for tests and audits.
    pub async fn open_escrow_totals(&self) -> Result<BTreeMap<Address, TokenAmount>> {
        let mut totals: BTreeMap<Address, TokenAmount> = BTreeMap::new();
        for id in self.all_jobs().await? {
            let job = self.job(id).await?;
            let entry = totals.entry(job.token).or_default();
            if job.status.is_open() {
                *entry = add(*entry, job.amount)?;
            }
        }
        for id in self.all_sessions().await? {
            let session = self.session(id).await?;
            let entry = totals.entry(session.token).or_default();
            if session.status.is_open() {
                *entry = add(*entry, session.unsettled())?;
            }
        }
        for (token, total) in totals.iter_mut() {
            let credited = self.total_credit(*token).await?;
            let fees = self.accrued_fees(*token).await?;
            *total = add(add(*total, credited)?, fees)?;
        }
        Ok(totals)
    }

    /// What the marketplace owes `account` in `token`: a host's earnings and refunds that
    /// could not be delivered. The account withdraws it with [`Self::withdraw_credit`].
    pub async fn escrow_credit(&self, token: Address, account: Address) -> Result<TokenAmount> {
        Ok(TokenAmount(
            call(self.marketplace_read().credit(token, account)).await?,
        ))
    }

    /// Everything the marketplace owes in `token` as credit (the sum of [`Self::escrow_credit`]).
    pub async fn total_credit(&self, token: Address) -> Result<TokenAmount> {
        Ok(TokenAmount(
            call(self.marketplace_read().total_credit(token)).await?,
        ))
    }

    /// Sends the signer's credit in `token` (earnings, undelivered refunds) to `to`.
    pub async fn withdraw_credit<S: Middleware + 'static>(
        &self,
        token: Address,
        to: Address,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let market = JobMarketplace::new(self.addresses.job_marketplace, signer.clone());
        Ok(tx_info(&send(market.withdraw_credit(token, to)).await?))
    }

    // ----- registry reads -----

    /// The node registered by `address`, or `None`.
    pub async fn node(&self, address: Address) -> Result<Option<RegisteredNode>> {
        let raw = call(self.registry_read().get_node(address)).await?;
        convert::node_from_abi(raw)
    }

    /// How many claimed jobs lock `address`'s stake.
    pub async fn open_claims(&self, address: Address) -> Result<u64> {
        Ok(call(self.marketplace_read().open_claims(address))
            .await?
            .low_u64())
    }

    /// Whether `address` is registered and active.
    pub async fn is_active(&self, address: Address) -> Result<bool> {
        call(self.registry_read().is_active(address)).await
    }

    /// Whether `address` is active and serves `model` (what `claimJob` requires).
    pub async fn can_serve(&self, address: Address, model: ModelId) -> Result<bool> {
        call(self.registry_read().can_serve(address, model.0)).await
    }

    /// The price per token `host` asks in `token`, or zero.
    pub async fn price_of(&self, host: Address, token: Address) -> Result<TokenAmount> {
        Ok(TokenAmount(
            call(self.registry_read().price_of(host, token)).await?,
        ))
    }

    /// One page of the active nodes serving `model`, and how many there are in all.
    pub async fn nodes_for_model(
        &self,
        model: ModelId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Address>, u64)> {
        let (page, total) = call(self.registry_read().nodes_for_model(
            model.0,
            U256::from(offset),
            U256::from(limit),
        ))
        .await?;
        Ok((page, total.low_u64()))
    }

    /// The registry's minimum stake, in FAB base units.
    pub async fn min_stake(&self) -> Result<TokenAmount> {
        Ok(TokenAmount(call(self.registry_read().min_stake()).await?))
    }

    /// The FAB token staked in the registry.
    pub async fn stake_token(&self) -> Result<Address> {
        call(self.registry_read().stake_token()).await
    }

    // ----- token reads -----

    /// `owner`'s balance of `token` (the zero address is ETH).
    pub async fn balance_of(&self, token: Address, owner: Address) -> Result<TokenAmount> {
        if token.is_zero() {
            let wei = self
                .provider
                .get_balance(owner, None)
                .await
                .map_err(|e| Error::Rpc(e.to_string()))?;
            return Ok(TokenAmount(wei));
        }
        Ok(TokenAmount(
            call(self.erc20(token).balance_of(owner)).await?,
        ))
    }

    /// How much `spender` may move of `owner`'s `token`.
    pub async fn allowance(
        &self,
        token: Address,
        owner: Address,
        spender: Address,
    ) -> Result<TokenAmount> {
        Ok(TokenAmount(
            call(self.erc20(token).allowance(owner, spender)).await?,
        ))
    }
}

fn add(a: TokenAmount, b: TokenAmount) -> Result<TokenAmount> {
    a.checked_add(b)
        .ok_or_else(|| Error::InvalidChainData("escrow total overflows".into()))
}

/// Runs a read-only call, decoding reverts.
pub(crate) async fn call<M: Middleware + 'static, D: Detokenize>(
    call: ContractCall<M, D>,
) -> Result<D> {
    call.call().await.map_err(Error::from_contract)
}

/// Sends a transaction and waits for its receipt. A revert caught when estimating gas is
/// decoded into a named error and costs nothing; a transaction mined and reverted is
/// [`Error::TxFailed`], with the cause found by replaying the call on the block's state.
pub(crate) async fn send<M: Middleware + 'static, D: Detokenize>(
    call: ContractCall<M, D>,
) -> Result<TransactionReceipt> {
    let pending = call.send().await.map_err(Error::from_contract)?;
    let hash = pending.tx_hash();
    let receipt = pending
        .await
        .map_err(|e| Error::Rpc(e.to_string()))?
        .ok_or(Error::TxDropped(hash))?;
    if receipt.status != Some(1u64.into()) {
        let info = tx_info(&receipt);
        let reason = match receipt.block_number {
            Some(block) => call
                .block(block)
                .call()
                .await
                .err()
                .map(Error::from_contract),
            None => None,
        };
        return Err(Error::TxFailed {
            hash,
            block: info.block,
            gas_used: info.gas_used,
            effective_gas_price: info.effective_gas_price,
            reason: reason.map(Box::new),
        });
    }
    Ok(receipt)
}

/// The sender address of a signing middleware.
pub(crate) fn sender<M: Middleware>(signer: &M) -> Result<Address> {
    signer.default_sender().ok_or(Error::NoSender)
}

/// Hash, block and gas of a receipt.
pub(crate) fn tx_info(receipt: &TransactionReceipt) -> TxInfo {
    TxInfo {
        hash: receipt.transaction_hash,
        block: receipt.block_number.map(|b| b.as_u64()).unwrap_or_default(),
        gas_used: receipt.gas_used.unwrap_or_default(),
        effective_gas_price: receipt.effective_gas_price.unwrap_or_default(),
    }
}
