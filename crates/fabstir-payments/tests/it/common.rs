//! A fresh anvil with everything deployed, and a payment manager over it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, BlockNumber, U256};
use fabstir_contracts::anvil::Anvil;
use fabstir_contracts::{HeadlessContractManager, LocalDeployConfig, ManagerConfig, WalletSigner};
use fabstir_core::job::prompt_hash;
use fabstir_core::{Deployment, JobDetails, JobRequirements, ModelId, PaymentToken, TokenAmount};
use fabstir_payments::{ApprovalPolicy, PaymentConfig, PaymentManager, TokenRegistry};

pub struct Env {
    pub anvil: Anvil,
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
        let anvil = Anvil::spawn().expect("anvil starts");
        let wallet = |i: usize| anvil.wallet(i).expect("dev account");
        let config = LocalDeployConfig {
            fund: vec![wallet(1).address()],
            ..LocalDeployConfig::default()
        };
        let deployment = anvil.deploy(0, &config).await.expect("deploys");
        let contracts = connect(&anvil.endpoint(), &deployment).await;
        Self {
            owner: contracts.signer(wallet(0)),
            client: contracts.signer(wallet(1)),
            poor: contracts.signer(wallet(5)),
            anvil,
            contracts,
            deployment,
        }
    }

    pub fn token(&self, symbol: &str) -> PaymentToken {
        self.deployment
            .token(symbol)
            .expect("deployed token")
            .clone()
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

    /// Job terms: 100 tokens at `price` base units each, deadline an hour ahead.
    pub async fn details(&self, price: u64) -> JobDetails {
        let now = self
            .contracts
            .provider()
            .get_block(BlockNumber::Latest)
            .await
            .unwrap()
            .unwrap()
            .timestamp
            .as_u64();
        JobDetails {
            model: ModelId::from_name("stories260K"),
            prompt_hash: prompt_hash("Once upon a time"),
            max_tokens: 100,
            price_per_token: TokenAmount::from_base_units(price),
            deadline: now + 3_600,
        }
    }

    pub fn open() -> JobRequirements {
        JobRequirements::default()
    }

    /// Transactions sent so far by `signer` (its nonce).
    pub async fn nonce(&self, signer: &Arc<WalletSigner>) -> U256 {
        self.contracts
            .provider()
            .get_transaction_count(signer.address(), None)
            .await
            .unwrap()
    }

    pub async fn allowance(&self, owner: Address, token: &PaymentToken) -> U256 {
        self.contracts
            .allowance(token.address(), owner, self.contracts.payment_spender())
            .await
            .unwrap()
            .base_units()
    }

    /// Conservation: the escrow holds exactly what open jobs are owed, per token.
    pub async fn assert_conserved(&self) {
        let totals = self.contracts.open_escrow_totals().await.unwrap();
        for token in &self.deployment.tokens {
            let held = self
                .contracts
                .escrow_balance(token.address())
                .await
                .unwrap();
            let owed = totals.get(&token.address()).copied().unwrap_or_default();
            assert_eq!(held, owed, "escrow of {} out of balance", token.symbol);
        }
    }
}

pub async fn connect(url: &str, deployment: &Deployment) -> HeadlessContractManager {
    HeadlessContractManager::connect(url, deployment, &ManagerConfig::local())
        .await
        .expect("connects")
}
