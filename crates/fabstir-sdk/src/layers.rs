//! The layers the SDK holds, each behind a trait so that it can be swapped: the chain
//! (contracts and payments) and the network (discovery, negotiation, streams). The real
//! implementations are [`ChainClient`] and [`P2pNetwork`].

use std::sync::Arc;

use async_trait::async_trait;
use ethers::providers::Middleware as _;
use ethers::signers::LocalWallet;
use fabstir_contracts::{HeadlessContractManager, LoggedEvent, OnChainJob};
use fabstir_core::primitives::Address;
use fabstir_core::wire::{JobRequest, JobResponse, PromptFrame};
use fabstir_core::{
    DiscoveredNode, JobDetails, JobId, JobRequirements, NodePeerId, PaymentToken, ProviderQuery,
    TokenAmount,
};
use fabstir_p2p::{ClientSigner, Network, PoolStats, StreamEvent};
use fabstir_payments::{JobPayment, PaymentManager};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::Result;

/// The chain as the SDK uses it. Spending calls take the application's wallet for that call.
#[async_trait]
pub trait ChainLayer: Send + Sync {
    /// The chain id.
    fn chain_id(&self) -> u64;
    /// The JobMarketplace address (covered by client signatures).
    fn marketplace(&self) -> Address;
    /// Resolves a payment token by symbol or address.
    fn token(&self, symbol_or_address: &str) -> Result<PaymentToken>;
    /// The chain's current time (latest block), unix seconds.
    async fn now(&self) -> Result<u64>;
    /// `owner`'s balance of `token`.
    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount>;
    /// Posts a job and pays its escrow; returns its id.
    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        wallet: &LocalWallet,
    ) -> Result<JobId>;
    /// A job as stored on chain.
    async fn job(&self, id: JobId) -> Result<OnChainJob>;
    /// Cancels an unclaimed job (full refund).
    async fn cancel_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()>;
    /// Expires a job after its deadline (full refund).
    async fn expire_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()>;
    /// Every marketplace event about a job, oldest first.
    async fn job_events(&self, id: JobId) -> Result<Vec<LoggedEvent>>;
}

/// The network as the SDK uses it.
#[async_trait]
pub trait NetworkLayer: Send + Sync {
    /// Verified providers matching the query.
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>>;
    /// Sends a job message to a host.
    async fn negotiate(&self, host: &NodePeerId, request: JobRequest) -> Result<JobResponse>;
    /// Opens an authenticated token stream for a claimed job.
    async fn open_stream(
        &self,
        host: &NodePeerId,
        job: JobId,
        signer: &dyn ClientSigner,
        prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>>;
    /// Records how a job with a host went (ranking uses it).
    fn record_outcome(&self, host: &NodePeerId, success: bool);
    /// The connection pool's counters, for a network that keeps a pool (the in-memory one
    /// does not).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// Retries a read while the RPC endpoint fails at the transport level, backing off from
/// 100 ms and doubling (about 3 s in all); other errors return at once. Writes are never
/// retried here: a resent transaction could be a second payment.
async fn with_backoff<T, F, Fut>(what: &str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempts = 0;
    loop {
        match op().await {
            Err(e) if is_transport(&e) && attempts < 5 => {
                attempts += 1;
                tracing::debug!(%what, error = %e, ?delay, "RPC unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

fn is_transport(error: &crate::Error) -> bool {
    use fabstir_contracts::Error as C;
    matches!(
        error,
        crate::Error::Contracts(C::Rpc(_))
            | crate::Error::Payments(fabstir_payments::Error::Contract(C::Rpc(_)))
            | crate::Error::Payments(fabstir_payments::Error::Shared(_))
    )
}

/// The real chain: contracts through `fabstir-contracts`, payments through
/// `fabstir-payments`. Reads ride out short RPC outages with backoff.
#[derive(Debug, Clone)]
pub struct ChainClient {
    payments: PaymentManager,
    start_block: u64,
}

impl ChainClient {
    /// A chain client over a payment manager; event queries start at `start_block` (the
    /// deployment's).
    pub fn new(payments: PaymentManager, start_block: u64) -> Self {
        Self {
            payments,
            start_block,
        }
    }

    fn contracts(&self) -> &HeadlessContractManager {
        self.payments.contracts()
    }

    /// The payment manager underneath.
    pub fn payments(&self) -> &PaymentManager {
        &self.payments
    }

    /// A transaction this client sent changed balances in its block, whether it succeeded
    /// (a refund) or was mined and reverted (its gas): balances cached from before that block
    /// must not be served again.
    fn mined(&self, sent: fabstir_contracts::Result<fabstir_contracts::TxInfo>) -> Result<()> {
        match &sent {
            Ok(tx) => self.payments.observe_block(tx.block),
            Err(fabstir_contracts::Error::TxFailed { block, .. }) => {
                self.payments.observe_block(*block);
            }
            Err(_) => {}
        }
        sent?;
        Ok(())
    }
}

#[async_trait]
impl ChainLayer for ChainClient {
    fn chain_id(&self) -> u64 {
        self.contracts().chain_id()
    }

    fn marketplace(&self) -> Address {
        self.contracts().addresses().job_marketplace
    }

    fn token(&self, symbol_or_address: &str) -> Result<PaymentToken> {
        Ok(self.payments.registry().resolve(symbol_or_address)?.clone())
    }

    async fn now(&self) -> Result<u64> {
        with_backoff("latest block", || async {
            let block = self
                .contracts()
                .provider()
                .get_block(ethers::types::BlockNumber::Latest)
                .await
                .map_err(|e| fabstir_contracts::Error::Rpc(e.to_string()))?
                .ok_or_else(|| fabstir_contracts::Error::Rpc("no latest block".into()))?;
            Ok(block.timestamp.as_u64())
        })
        .await
    }

    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        with_backoff("balance", || async {
            Ok(self.payments.balance(owner, token).await?)
        })
        .await
    }

    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        wallet: &LocalWallet,
    ) -> Result<JobId> {
        let signer = self.contracts().signer(wallet.clone());
        let submission = self
            .payments
            .submit_job(details, requirements, payment, &signer)
            .await?;
        Ok(submission.posted.job)
    }

    async fn job(&self, id: JobId) -> Result<OnChainJob> {
        with_backoff("job", || async { Ok(self.contracts().job(id).await?) }).await
    }

    async fn cancel_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()> {
        let signer = self.contracts().signer(wallet.clone());
        self.mined(self.contracts().cancel_job(id, &signer).await)
    }

    async fn expire_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()> {
        let signer = self.contracts().signer(wallet.clone());
        self.mined(self.contracts().expire_job(id, &signer).await)
    }

    async fn job_events(&self, id: JobId) -> Result<Vec<LoggedEvent>> {
        let events = with_backoff("job events", || async {
            Ok(self.contracts().job_events(id, self.start_block).await?)
        })
        .await?;
        // Events are news of newer blocks (a settlement, a refund): balances cached for older
        // ones must not be used again.
        if let Some(block) = events.iter().map(|e| e.block).max() {
            self.payments.observe_block(block);
        }
        Ok(events)
    }
}

/// The real network: a `fabstir-p2p` node acting as a client.
#[derive(Debug, Clone)]
pub struct P2pNetwork {
    network: Network,
}

impl P2pNetwork {
    /// Wraps a running network node.
    pub fn new(network: Network) -> Self {
        Self { network }
    }

    /// The network node.
    pub fn network(&self) -> &Network {
        &self.network
    }
}

#[async_trait]
impl NetworkLayer for P2pNetwork {
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        Ok(self.network.find_providers(query).await?)
    }

    async fn negotiate(&self, host: &NodePeerId, request: JobRequest) -> Result<JobResponse> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        Ok(self.network.negotiate(peer, request).await?)
    }

    async fn open_stream(
        &self,
        host: &NodePeerId,
        job: JobId,
        signer: &dyn ClientSigner,
        prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        let stream = self.network.open_stream(peer, job, signer, prompt).await?;
        Ok(stream.map(|event| event.map_err(Into::into)).boxed())
    }

    fn record_outcome(&self, host: &NodePeerId, success: bool) {
        self.network.record_outcome(host, success);
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.network.pool_stats())
    }
}

/// Signs the client's stream challenges with the application's wallet.
#[derive(Debug, Clone)]
pub(crate) struct WalletClientSigner(pub(crate) Arc<LocalWallet>);

#[async_trait]
impl ClientSigner for WalletClientSigner {
    fn address(&self) -> Address {
        ethers::signers::Signer::address(self.0.as_ref())
    }

    async fn sign_message(&self, message: &str) -> fabstir_p2p::Result<Vec<u8>> {
        let signature = ethers::signers::Signer::sign_message(self.0.as_ref(), message)
            .await
            .map_err(|e| fabstir_p2p::Error::Signer(e.to_string()))?;
        Ok(signature.to_vec())
    }
}
