//! A fresh local chain (the `fabstir-contracts` harness) with everything deployed, and a
//! payment manager over it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ethers::types::{Address, U256};
use fabstir_contracts::testing::LocalChain;
use fabstir_contracts::{HeadlessContractManager, WalletSigner};
use fabstir_core::{Deployment, JobDetails, JobRequirements, PaymentToken};
use fabstir_payments::{
    ApprovalPolicy, JobPayment, PaymentConfig, PaymentManager, Submission, TokenRegistry,
};

/// The model every job asks for.
pub const MODEL: &str = "stories260K";
/// The prompt every job commits to.
pub const PROMPT: &str = "Once upon a time";
/// Tokens asked for per job.
pub const MAX_TOKENS: u32 = 100;

pub struct Env {
    pub chain: LocalChain,
    pub contracts: HeadlessContractManager,
    pub deployment: Deployment,
    pub owner: Arc<WalletSigner>,
    /// Funded with every test token.
    pub client: Arc<WalletSigner>,
    /// Holds ETH only.
    pub poor: Arc<WalletSigner>,
}

impl Env {
    pub async fn new() -> Self {
        let chain = LocalChain::start().await.expect("the local chain starts");
        Self {
            contracts: chain.manager().clone(),
            deployment: chain.deployment().clone(),
            owner: chain.deployer().signer.clone(),
            client: chain.client().signer.clone(),
            poor: chain.unfunded()[0].signer.clone(),
            chain,
        }
    }

    pub fn token(&self, symbol: &str) -> PaymentToken {
        self.chain.token(symbol).expect("deployed token").clone()
    }

    /// A manager with the given approval policy and permit preference.
    pub fn payments(&self, approval: ApprovalPolicy, prefer_permit: bool) -> PaymentManager {
        PaymentManager::new(
            self.contracts.clone(),
            TokenRegistry::from_deployment(&self.deployment),
            PaymentConfig {
                approval,
                prefer_permit,
                block_poll_interval: Duration::from_millis(25),
                ..PaymentConfig::default()
            },
        )
    }

    /// A cap of `human` units of `symbol` per approval.
    pub fn cap(&self, symbol: &str, human: &str) -> ApprovalPolicy {
        let token = self.token(symbol);
        let amount = token.parse_amount(human).unwrap();
        ApprovalPolicy::Cap(BTreeMap::from([(token.address(), amount)]))
    }

    /// Job terms: [`MAX_TOKENS`] at `price` base units each, deadline an hour ahead.
    pub async fn details(&self, price: u64) -> JobDetails {
        self.chain
            .job_details(MODEL, PROMPT, MAX_TOKENS, price, 3_600)
            .await
            .unwrap()
    }

    pub fn open() -> JobRequirements {
        JobRequirements::default()
    }

    /// The client submits an open job at `price` paid in `token` through `payments`; returns
    /// the payment, the submission and how many transactions the client sent for it.
    pub async fn submit(
        &self,
        payments: &PaymentManager,
        token: &PaymentToken,
        price: u64,
    ) -> (JobPayment, Submission, U256) {
        let details = self.details(price).await;
        let payment = JobPayment::for_job(token.clone(), &details).unwrap();
        let before = self.nonce(&self.client).await;
        let submission = payments
            .submit_job(&details, &Self::open(), &payment, &self.client)
            .await
            .unwrap();
        let sent = self.nonce(&self.client).await - before;
        (payment, submission, sent)
    }

    /// Transactions sent so far by `signer` (its nonce).
    pub async fn nonce(&self, signer: &Arc<WalletSigner>) -> U256 {
        self.chain.nonce(signer.address()).await.unwrap()
    }

    pub async fn allowance(&self, owner: Address, token: &PaymentToken) -> U256 {
        self.contracts
            .allowance(token.address(), owner, self.contracts.payment_spender())
            .await
            .unwrap()
            .base_units()
    }

    /// Conservation: the escrow holds exactly what open jobs are owed, per token, and every
    /// test token's supply is held by known accounts.
    pub async fn assert_conserved(&self) {
        self.chain.assert_conserved(&[]).await;
    }
}
