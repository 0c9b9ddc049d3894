//! Shared setup: a fresh anvil chain with everything deployed, named accounts, helpers, and
//! the conservation check run at the end of every test.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, U256};
use fabstir_contracts::anvil::Anvil;
use fabstir_contracts::{
    HeadlessContractManager, LocalDeployConfig, ManagerConfig, NodeRegistration, PostedJob,
    WalletSigner,
};
use fabstir_core::job::prompt_hash;
use fabstir_core::{
    Deployment, JobDetails, JobRequirements, ModelId, NodePeerId, TokenAmount, TokenPrice,
};

pub(crate) const MODEL: &str = "llama-2-7b";
pub(crate) const OTHER_MODEL: &str = "mistral-7b";

/// One test's chain and actors.
pub(crate) struct Env {
    pub(crate) anvil: Anvil,
    pub(crate) manager: HeadlessContractManager,
    pub(crate) deployment: Deployment,
    pub(crate) owner: Arc<WalletSigner>,
    pub(crate) client: Arc<WalletSigner>,
    pub(crate) host: Arc<WalletSigner>,
    pub(crate) host2: Arc<WalletSigner>,
    pub(crate) other: Arc<WalletSigner>,
    pub(crate) treasury: Address,
    /// Extra ERC-20s a test deployed (checked by the conservation check too).
    pub(crate) extra_tokens: Vec<Address>,
}

impl Env {
    pub(crate) async fn new() -> Self {
        let anvil = Anvil::spawn().expect("anvil starts");
        let wallet = |i: usize| anvil.wallet(i).expect("dev account");
        let treasury = wallet(9).address();
        let fund: Vec<Address> = (1..=4).map(|i| wallet(i).address()).collect();
        let config = LocalDeployConfig {
            treasury: Some(treasury),
            fund,
            ..LocalDeployConfig::default()
        };
        let deployment = anvil.deploy(0, &config).await.expect("deploys");
        let manager = HeadlessContractManager::connect(
            &anvil.endpoint(),
            &deployment,
            &ManagerConfig::local(),
        )
        .await
        .expect("connects");
        let owner = manager.signer(wallet(0));
        let client = manager.signer(wallet(1));
        let host = manager.signer(wallet(2));
        let host2 = manager.signer(wallet(3));
        let other = manager.signer(wallet(4));
        Self {
            anvil,
            manager,
            deployment,
            owner,
            client,
            host,
            host2,
            other,
            treasury,
            extra_tokens: Vec::new(),
        }
    }

    pub(crate) fn token(&self, symbol: &str) -> Address {
        self.deployment
            .token(symbol)
            .expect("token deployed")
            .address()
    }

    /// Every account the tests use: balances outside these would mean funds went astray.
    pub(crate) fn known_accounts(&self) -> Vec<Address> {
        let mut accounts: Vec<Address> = self.anvil.wallets().iter().map(|w| w.address()).collect();
        accounts.push(self.deployment.contracts.payment_escrow);
        accounts.push(self.deployment.contracts.node_registry);
        accounts.push(self.deployment.contracts.job_marketplace);
        accounts.extend(self.extra_tokens.iter().copied());
        accounts
    }

    /// Registers `signer` as a host serving `models` with ETH and USDC prices.
    pub(crate) async fn register(
        &self,
        signer: &Arc<WalletSigner>,
        peer_byte: u8,
        models: &[&str],
    ) {
        let registration = NodeRegistration {
            peer_id: peer_id(peer_byte),
            models: models.iter().map(|m| ModelId::from_name(m)).collect(),
            prices: vec![
                TokenPrice {
                    token: Address::zero(),
                    price_per_token: TokenAmount::from_base_units(1_000_000_000u64),
                },
                TokenPrice {
                    token: self.token("USDC"),
                    price_per_token: TokenAmount::from_base_units(10u64),
                },
            ],
            metadata: r#"{"region":"local"}"#.to_owned(),
            stake: self.manager.min_stake().await.expect("min stake"),
        };
        self.manager
            .register_node(&registration, signer)
            .await
            .expect("registers");
    }

    /// The chain's latest block time.
    pub(crate) async fn now(&self) -> u64 {
        let block = self
            .manager
            .provider()
            .get_block(ethers::types::BlockNumber::Latest)
            .await
            .expect("block")
            .expect("latest block");
        block.timestamp.as_u64()
    }

    /// Job terms for `MODEL`, deadline an hour ahead.
    pub(crate) async fn details(&self, max_tokens: u32, price: u64) -> JobDetails {
        JobDetails {
            model: ModelId::from_name(MODEL),
            prompt_hash: prompt_hash("Tell me a story about a brave llama."),
            max_tokens,
            price_per_token: TokenAmount::from_base_units(price),
            deadline: self.now().await + 3_600,
        }
    }

    pub(crate) fn open() -> JobRequirements {
        JobRequirements::default()
    }

    pub(crate) fn assigned(host: &Arc<WalletSigner>) -> JobRequirements {
        JobRequirements {
            assigned_host: Some(host.address()),
        }
    }

    pub(crate) async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.manager
            .balance_of(token, owner)
            .await
            .expect("balance")
            .base_units()
    }

    /// The client posts an open ETH job of `max_tokens` at `price` wei each; returns it and
    /// its escrow.
    pub(crate) async fn post_open_eth_job(
        &self,
        max_tokens: u32,
        price: u64,
    ) -> (PostedJob, TokenAmount) {
        let details = self.details(max_tokens, price).await;
        let value = details.escrow_amount().expect("no overflow");
        let posted = self
            .manager
            .post_job(&details, &Self::open(), value, &self.client)
            .await
            .expect("posts");
        (posted, value)
    }

    /// The client approves exactly the escrow and posts an open job paid in `token`.
    pub(crate) async fn post_open_token_job(
        &self,
        details: &JobDetails,
        token: Address,
        amount: TokenAmount,
    ) -> fabstir_contracts::PostedJob {
        self.approve_spender(&self.client, token, amount.base_units())
            .await;
        self.manager
            .post_job_with_token(details, &Env::open(), token, amount, &self.client)
            .await
            .expect("posts")
    }

    pub(crate) async fn approve_spender(
        &self,
        signer: &Arc<WalletSigner>,
        token: Address,
        amount: U256,
    ) {
        self.manager
            .approve(
                token,
                self.manager.payment_spender(),
                TokenAmount(amount),
                signer,
            )
            .await
            .expect("approves");
    }

    /// The conservation check every test ends with: for each token, the escrow holds exactly
    /// the sum of open jobs' amounts; and every ERC-20's supply is held by known accounts, so
    /// nothing was created or lost.
    pub(crate) async fn finish(self) {
        let totals = self.manager.open_escrow_totals().await.expect("totals");
        let mut tokens: Vec<Address> = self.deployment.tokens.iter().map(|t| t.address()).collect();
        tokens.extend(self.extra_tokens.iter().copied());
        for token in &tokens {
            let held = self
                .manager
                .escrow_balance(*token)
                .await
                .expect("escrow balance");
            let owed = totals.get(token).copied().unwrap_or_default();
            assert_eq!(
                held, owed,
                "escrow of token {token:#x} holds {held:?}, open jobs {owed:?}"
            );
        }
        let accounts = self.known_accounts();
        for token in tokens.iter().filter(|t| !t.is_zero()) {
            let contract = fabstir_contracts::bindings::test_usdc::TestUSDC::new(
                *token,
                self.manager.provider().clone(),
            );
            let supply = contract.total_supply().call().await.expect("supply");
            let mut sum = U256::zero();
            for account in &accounts {
                sum += self.balance(*token, *account).await;
            }
            assert_eq!(
                sum, supply,
                "token {token:#x}: known balances differ from supply"
            );
        }
    }
}

/// A valid identity-multihash peer id distinguished by one byte.
pub(crate) fn peer_id(byte: u8) -> NodePeerId {
    let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 0x20];
    bytes.extend([byte; 32]);
    NodePeerId::from_bytes(bytes).expect("valid peer id")
}
