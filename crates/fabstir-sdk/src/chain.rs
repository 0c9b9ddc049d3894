//! [`ChainClient`]: the real chain layer, contracts through `fabstir-contracts` and payments
//! through `fabstir-payments`. Reads ride out short RPC outages with backoff; writes are
//! never retried (a resent transaction could be a second payment).

use async_trait::async_trait;
use ethers::signers::LocalWallet;
use fabstir_contracts::{HeadlessContractManager, LoggedEvent, TxInfo};
use fabstir_core::auth::SigningKey;
use fabstir_core::primitives::Address;
use fabstir_core::{
    JobDetails, JobId, JobOutcome, JobPayment, JobRequirements, MarketRules, OnChainJob,
    OnChainSession, PaymentToken, SessionDetails, SessionId, TokenAmount,
};
use fabstir_payments::PaymentManager;
use tokio::sync::OnceCell;

use crate::ports::ChainLayer;
use crate::{Error, Result};

/// Retries a read while the RPC endpoint fails at the transport level, backing off from
/// 100 ms and doubling (about 3 s in all); other errors return at once.
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

fn is_transport(error: &Error) -> bool {
    use fabstir_contracts::Error as C;
    matches!(
        error,
        Error::Contracts(C::Rpc(_))
            | Error::Payments(fabstir_payments::Error::Contract(C::Rpc(_)))
            | Error::Payments(fabstir_payments::Error::Shared(_))
    )
}

/// The real chain. Event queries start at the deployment's block.
#[derive(Debug, Clone)]
pub struct ChainClient {
    payments: PaymentManager,
    start_block: u64,
    /// The marketplace's immutable rules, read once.
    rules: OnceCell<MarketRules>,
}

impl ChainClient {
    /// A chain client over a payment manager; event queries start at `start_block` (the
    /// deployment's).
    pub fn new(payments: PaymentManager, start_block: u64) -> Self {
        Self {
            payments,
            start_block,
            rules: OnceCell::new(),
        }
    }

    fn contracts(&self) -> &HeadlessContractManager {
        self.payments.contracts()
    }

    /// The payment manager underneath.
    pub fn payments(&self) -> &PaymentManager {
        &self.payments
    }

    fn wallet(key: &SigningKey) -> LocalWallet {
        LocalWallet::from(key.clone())
    }

    /// A transaction this client sent changed balances in its block, whether it succeeded
    /// (a refund) or was mined and reverted (its gas): balances cached from before that block
    /// must not be served again.
    fn mined(&self, sent: fabstir_contracts::Result<TxInfo>) -> Result<()> {
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

    async fn job_events(&self, id: JobId) -> Result<Vec<LoggedEvent>> {
        let events = with_backoff("job events", || async {
            // A job id names the block it was posted in: nothing before it concerns the job.
            let from = self.start_block.max(fabstir_contracts::posted_block(id));
            Ok(self.contracts().job_events(id, from).await?)
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
            Ok(self.contracts().latest_block_time().await?)
        })
        .await
    }

    async fn rules(&self) -> Result<MarketRules> {
        self.rules
            .get_or_try_init(|| {
                with_backoff("market rules", || async {
                    Ok(self.contracts().market_rules().await?)
                })
            })
            .await
            .copied()
    }

    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        with_backoff("balance", || async {
            Ok(self.payments.balance(owner, token).await?)
        })
        .await
    }

    async fn credit(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        with_backoff("credit", || async {
            Ok(self
                .contracts()
                .escrow_credit(token.address(), owner)
                .await?)
        })
        .await
    }

    async fn withdraw_credit(&self, token: &PaymentToken, key: &SigningKey) -> Result<TokenAmount> {
        let owner = fabstir_core::auth::address_of(key);
        let owed = self.credit(owner, token).await?;
        if owed.is_zero() {
            return Ok(owed);
        }
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(
            self.contracts()
                .withdraw_credit(token.address(), owner, &signer)
                .await,
        )?;
        Ok(owed)
    }

    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<JobId> {
        let signer = self.contracts().signer(Self::wallet(key));
        let submission = self
            .payments
            .submit_job(details, requirements, payment, &signer)
            .await?;
        Ok(submission.posted.job)
    }

    async fn job(&self, id: JobId) -> Result<OnChainJob> {
        with_backoff("job", || async { Ok(self.contracts().job(id).await?) }).await
    }

    async fn cancel_job(&self, id: JobId, key: &SigningKey) -> Result<()> {
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(self.contracts().cancel_job(id, &signer).await)
    }

    async fn request_close(&self, id: JobId, key: &SigningKey) -> Result<()> {
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(self.contracts().request_close(id, &signer).await)
    }

    async fn expire_job(&self, id: JobId, key: &SigningKey) -> Result<()> {
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(self.contracts().expire_job(id, &signer).await)
    }

    async fn job_outcome(&self, id: JobId) -> Result<Option<JobOutcome>> {
        // The first event that ends the job says how.
        Ok(self
            .job_events(id)
            .await?
            .iter()
            .find_map(|e| e.event.outcome()))
    }

    async fn open_session(
        &self,
        details: &SessionDetails,
        payment: &JobPayment,
        key: &SigningKey,
    ) -> Result<SessionId> {
        let signer = self.contracts().signer(Self::wallet(key));
        let submission = self
            .payments
            .open_session(details, payment, &signer)
            .await?;
        Ok(submission.opened.session)
    }

    async fn session(&self, id: SessionId) -> Result<OnChainSession> {
        with_backoff("session", || async {
            Ok(self.contracts().session(id).await?)
        })
        .await
    }

    async fn top_up_session(
        &self,
        id: SessionId,
        amount: TokenAmount,
        key: &SigningKey,
    ) -> Result<()> {
        let session = self.session(id).await?;
        let token = self.token(&format!("{:#x}", session.token))?;
        let signer = self.contracts().signer(Self::wallet(key));
        self.payments
            .top_up_session(id, &JobPayment { token, amount }, &signer)
            .await?;
        Ok(())
    }

    async fn request_session_close(&self, id: SessionId, key: &SigningKey) -> Result<()> {
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(self.contracts().request_session_close(id, &signer).await)
    }

    async fn expire_session(&self, id: SessionId, key: &SigningKey) -> Result<()> {
        let signer = self.contracts().signer(Self::wallet(key));
        self.mined(self.contracts().expire_session(id, &signer).await)
    }

    async fn sessions_of(&self, client: Address) -> Result<Vec<OnChainSession>> {
        let start = self.start_block;
        with_backoff("sessions", || async {
            Ok(self.contracts().sessions_of(client, start).await?)
        })
        .await
    }
}
