//! Shared setup: a fresh local chain (the crate's `testing` harness) with everything deployed,
//! the accounts by role, job helpers, and the conservation check run at the end of every test.

use std::sync::Arc;

use ethers::abi::Detokenize;
use ethers::contract::ContractCall;
use ethers::providers::Middleware;
use ethers::signers::Signer as _;
use ethers::types::{Address, H256, U256};
use fabstir_contracts::testing::{Balances, LocalChain};
use fabstir_contracts::{
    HeadlessContractManager, LOCAL_RULES, NodeRegistration, OpenedSession, PostedJob,
    RegisteredNode, Settlement, TxInfo, WalletSigner,
};
use fabstir_core::auth::SigningKey;
use fabstir_core::receipt::{Receipt, ReceiptDomain, SignedReceipt};
use fabstir_core::{
    Deployment, JobDetails, JobId, JobRequirements, ModelId, SessionDetails, TokenAmount,
    TokenPrice,
};

pub(crate) const MODEL: &str = "llama-2-7b";
pub(crate) const OTHER_MODEL: &str = "mistral-7b";

/// A result CID (CIDv1, raw, sha2-256).
pub(crate) const CID: &[u8] = b"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

/// The prompt every job commits to.
const PROMPT: &str = "Tell me a story about a brave llama.";

/// Seconds from the latest block to a job's deadline.
const JOB_LIFETIME: u64 = 3_600;

/// Awaits a call that must fail and asserts that its error matches the pattern (with an
/// optional guard); evaluates to the error.
macro_rules! fails {
    ($call:expr, $($pattern:tt)+) => {{
        let err = $call.await.unwrap_err();
        assert!(matches!(err, $($pattern)+), "{err}");
        err
    }};
}
pub(crate) use fails;

/// One test's chain and actors.
pub(crate) struct Env {
    pub(crate) chain: LocalChain,
    pub(crate) manager: HeadlessContractManager,
    pub(crate) deployment: Deployment,
    pub(crate) owner: Arc<WalletSigner>,
    pub(crate) client: Arc<WalletSigner>,
    pub(crate) host: Arc<WalletSigner>,
    pub(crate) host2: Arc<WalletSigner>,
    pub(crate) other: Arc<WalletSigner>,
    /// Holds ETH but no test token (no FAB to stake).
    pub(crate) poor: Arc<WalletSigner>,
    pub(crate) treasury: Address,
    /// Extra ERC-20s a test deployed (checked by the conservation check too).
    pub(crate) extra_tokens: Vec<Address>,
}

impl Env {
    pub(crate) async fn new() -> Self {
        let chain = LocalChain::start().await.expect("the local chain starts");
        let signer = |account: &fabstir_contracts::testing::Account| account.signer.clone();
        Self {
            manager: chain.manager().clone(),
            deployment: chain.deployment().clone(),
            owner: signer(chain.deployer()),
            client: signer(chain.client()),
            host: signer(&chain.hosts()[0]),
            host2: signer(&chain.hosts()[1]),
            other: signer(&chain.others()[0]),
            poor: signer(&chain.unfunded()[0]),
            treasury: chain.treasury().address(),
            extra_tokens: Vec::new(),
            chain,
        }
    }

    /// A fresh chain on which `host` is registered (peer id byte 1) serving [`MODEL`].
    pub(crate) async fn with_host() -> Self {
        let env = Self::new().await;
        env.register(&env.host, 1, &[MODEL]).await;
        env
    }

    pub(crate) fn token(&self, symbol: &str) -> Address {
        self.chain.token(symbol).expect("token deployed").address()
    }

    /// Registers `signer` as a host serving `models` with ETH and USDC prices; returns the
    /// `register` transaction.
    pub(crate) async fn register(
        &self,
        signer: &Arc<WalletSigner>,
        peer_byte: u8,
        models: &[&str],
    ) -> TxInfo {
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
            .expect("registers")
    }

    /// The chain's latest block time.
    pub(crate) async fn now(&self) -> u64 {
        self.manager
            .latest_block_time()
            .await
            .expect("latest block time")
    }

    /// Moves the chain's clock just past an hour and a grace period: beyond the deadline and
    /// the submission grace of every job posted so far ([`JOB_LIFETIME`]) and the registry's
    /// unbonding delay (an hour by default).
    pub(crate) async fn pass_an_hour(&self) {
        self.chain
            .advance_time(JOB_LIFETIME + LOCAL_RULES.submit_grace + 1)
            .await
            .expect("time passes");
    }

    /// Job terms for `MODEL`, deadline an hour ahead.
    pub(crate) async fn details(&self, max_tokens: u32, price: u64) -> JobDetails {
        self.chain
            .job_details(MODEL, PROMPT, max_tokens, price, JOB_LIFETIME)
            .await
            .expect("job terms")
    }

    pub(crate) fn open() -> JobRequirements {
        JobRequirements::default()
    }

    pub(crate) fn assigned(host: &Arc<WalletSigner>) -> JobRequirements {
        JobRequirements {
            assigned_host: Some(host.address()),
        }
    }

    /// The registry's record of `address`, which must have one.
    pub(crate) async fn node(&self, address: Address) -> RegisteredNode {
        let node = self.manager.node(address).await.expect("read");
        node.expect("a registry record")
    }

    pub(crate) async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.chain.balance(token, owner).await.expect("balance")
    }

    /// What `token` a settlement moves: the client's, the host's (its balance and its
    /// earnings credited in the marketplace), the treasury's and the marketplace's own.
    pub(crate) async fn parties(&self, token: Address) -> Balances {
        let accounts = [
            self.client.address(),
            self.host.address(),
            self.treasury,
            self.deployment.contracts.job_marketplace,
        ];
        self.chain
            .holdings(token, &accounts)
            .await
            .expect("balances")
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

    /// The client posts an open job of `max_tokens` at `price` base units each, paid in
    /// `token` with an approval of exactly the escrow; returns its terms, the post and the
    /// escrow.
    pub(crate) async fn post_token_job(
        &self,
        token: Address,
        max_tokens: u32,
        price: u64,
    ) -> (JobDetails, PostedJob, TokenAmount) {
        let details = self.details(max_tokens, price).await;
        let amount = details.escrow_amount().expect("no overflow");
        let posted = self.post_open_token_job(&details, token, amount).await;
        (details, posted, amount)
    }

    /// The client approves exactly the escrow and posts an open job paid in `token`.
    pub(crate) async fn post_open_token_job(
        &self,
        details: &JobDetails,
        token: Address,
        amount: TokenAmount,
    ) -> PostedJob {
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

    /// `host` claims `job`.
    pub(crate) async fn claim(&self, job: JobId, host: &Arc<WalletSigner>) -> TxInfo {
        self.manager.claim_job(job, host).await.expect("claims")
    }

    /// `host` submits the result `cid` of `job`, `tokens` used.
    pub(crate) async fn submit(
        &self,
        job: JobId,
        cid: &[u8],
        tokens: u64,
        host: &Arc<WalletSigner>,
    ) -> Settlement {
        let client = self.manager.job(job).await.expect("job").client;
        let receipt = self.receipt_by(self.key_of(client), job, tokens, self.domain());
        self.manager
            .submit_result(job, cid, &receipt, host)
            .await
            .expect("submits")
    }

    /// The client's receipt for `tokens` of `job` (a transcript the contract records but does
    /// not check), signed with EIP-712 for this chain and marketplace.
    pub(crate) fn receipt(&self, job: JobId, tokens: u64) -> SignedReceipt {
        self.receipt_by(
            self.chain.client().wallet.signer(),
            job,
            tokens,
            self.domain(),
        )
    }

    /// The key of the chain's account `address`; the client's for any other address (a
    /// contract wallet the client deployed and owns signs with the client's key, ERC-1271).
    pub(crate) fn key_of(&self, address: Address) -> &SigningKey {
        let chain = &self.chain;
        std::iter::once(chain.deployer())
            .chain(std::iter::once(chain.client()))
            .chain(chain.hosts())
            .chain(chain.others())
            .chain(chain.unfunded())
            .find(|a| a.wallet.address() == address)
            .unwrap_or(chain.client())
            .wallet
            .signer()
    }

    /// A receipt signed by `key` under `domain` (for forgeries).
    pub(crate) fn receipt_by(
        &self,
        key: &SigningKey,
        job: JobId,
        tokens: u64,
        domain: ReceiptDomain,
    ) -> SignedReceipt {
        let receipt = Receipt {
            job,
            tokens,
            transcript: H256::from_low_u64_be(tokens + 1),
        };
        SignedReceipt {
            tokens,
            transcript: receipt.transcript,
            signature: receipt.sign(&domain, key).expect("signs").to_vec(),
        }
    }

    /// The receipts' EIP-712 domain on this chain.
    pub(crate) fn domain(&self) -> ReceiptDomain {
        ReceiptDomain {
            chain_id: self.deployment.chain_id,
            marketplace: self.deployment.contracts.job_marketplace,
        }
    }

    /// The host claims `job` and submits the result `cid`, `tokens` used; returns the claim
    /// and the settlement.
    pub(crate) async fn settle(&self, job: JobId, cid: &[u8], tokens: u64) -> (TxInfo, Settlement) {
        let claim = self.claim(job, &self.host).await;
        (claim, self.submit(job, cid, tokens, &self.host).await)
    }

    /// The newest job posted.
    pub(crate) async fn last_job(&self) -> JobId {
        let jobs = self.manager.all_jobs().await.expect("jobs");
        *jobs.last().expect("a job was posted")
    }

    /// The conservation check every test ends with: for each token, the escrow holds exactly
    /// the sum of open jobs' amounts; and every ERC-20's supply is held by known accounts, so
    /// nothing was created or lost.
    pub(crate) async fn finish(self) {
        self.chain.assert_conserved(&self.extra_tokens).await;
    }
}

/// A valid identity-multihash peer id distinguished by one byte.
pub(crate) use fabstir_contracts::testing::test_peer_id as peer_id;

/// Job terms as the marketplace's ABI takes them, for tests that call it directly.
pub(crate) fn abi_details(
    details: &JobDetails,
) -> fabstir_contracts::bindings::job_marketplace::JobDetails {
    fabstir_contracts::bindings::job_marketplace::JobDetails {
        model_id: details.model.0,
        prompt_hash: details.prompt_hash.0,
        max_tokens: details.max_tokens,
        price_per_token: details.price_per_token.base_units(),
        deadline: details.deadline,
    }
}

/// Sends a raw contract call and waits until it is mined.
pub(crate) async fn mined<M: Middleware + 'static, D: Detokenize>(call: ContractCall<M, D>) {
    call.send().await.expect("sends").await.expect("mined");
}

/// Sessions: the client opens with [`MODEL`] and `env.host`, an hour to expiry.
impl Env {
    /// Session terms with the registered host at `price` base units per token.
    pub(crate) async fn session_details(&self, price: u64) -> SessionDetails {
        SessionDetails {
            model: ModelId::from_name(MODEL),
            host: self.host.address(),
            price_per_token: TokenAmount::from_base_units(price),
            expiry: self.now().await + JOB_LIFETIME,
        }
    }

    /// The client opens a USDC session with `deposit` at `price` (approving exactly the
    /// deposit).
    pub(crate) async fn open_usdc_session(&self, deposit: u64, price: u64) -> OpenedSession {
        let usdc = self.token("USDC");
        let details = self.session_details(price).await;
        self.approve_spender(&self.client, usdc, U256::from(deposit))
            .await;
        self.manager
            .open_session_with_token(
                &details,
                usdc,
                TokenAmount::from_base_units(deposit),
                &self.client,
            )
            .await
            .expect("opens")
    }
}
