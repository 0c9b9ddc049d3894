//! Shared setup: a fresh anvil chain with the contracts deployed and funded, host nodes serving
//! the embedded `stories260K` model, and a plain client (a libp2p peer without a host service
//! plus the contract manager) that posts jobs, streams them and reads the settlement.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ethers::signers::LocalWallet;
use fabstir_contracts::ChainPeerRegistry;
use fabstir_contracts::testing::{Balances, LocalChain};
use fabstir_contracts::{
    HeadlessContractManager, JobStatus, LoggedEvent, MarketplaceEvent, OnChainJob, PostedJob,
    WalletSigner,
};
use fabstir_core::auth::SigningKey;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::{Address, H256, U256};
use fabstir_core::wire::{PromptFrame, StreamDone};
use fabstir_core::{Deployment, JobDetails, JobId, JobOutcome, JobRequirements, TokenAmount};
use fabstir_node::{BackendConfig, ModelConfig, NodeConfig, RunningNode};
use fabstir_p2p::{Keypair, Network, P2pConfig, PeerId, StreamEvent};
use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The model every host serves.
pub const MODEL: &str = "stories260K";
/// A model no host serves.
pub const OTHER_MODEL: &str = "llama-2-7b";
/// Host prices in human units, as the node configuration takes them.
pub const USDC_PRICE_HUMAN: &str = "0.001";
pub const ETH_PRICE_HUMAN: &str = "0.000000001";
/// The same prices in base units (USDC has 6 decimals, ETH 18).
pub const USDC_PRICE: u64 = 1_000;
pub const ETH_PRICE: u64 = 1_000_000_000;
/// Tokens asked for per job.
pub const MAX_TOKENS: u32 = 8;
/// How long a test waits for chain state before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The checkpoint of the test model, committed in the workspace's `models/tinyllamas`.
fn checkpoint() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tinyllamas/stories260K.bin");
    assert!(path.exists(), "test model {} is missing", path.display());
    path
}

/// One test's chain, hosts' configurations and client.
pub struct Env {
    pub chain: LocalChain,
    pub deployment: Deployment,
    pub manager: HeadlessContractManager,
    pub client_key: SigningKey,
    pub client: Arc<WalletSigner>,
    pub treasury: Address,
    pub usdc: Address,
    dir: tempfile::TempDir,
    deployment_path: PathBuf,
}

impl Env {
    /// Starts the local chain: anvil with the contracts deployed and funded.
    pub async fn new() -> Self {
        let chain = LocalChain::start().await.unwrap();
        let deployment = chain.deployment().clone();
        let dir = tempfile::tempdir().unwrap();
        let deployment_path = dir.path().join("deployment.json");
        deployment.save(&deployment_path).unwrap();
        Self {
            manager: chain.manager().clone(),
            client_key: chain.client().wallet.signer().clone(),
            client: chain.client().signer.clone(),
            treasury: chain.treasury().address(),
            usdc: chain.token("USDC").unwrap().address(),
            chain,
            deployment,
            dir,
            deployment_path,
        }
    }

    /// Host `i`'s dev account.
    pub fn host_wallet(&self, i: usize) -> LocalWallet {
        self.chain.hosts()[i].wallet.clone()
    }

    /// Host `i`'s Ethereum key.
    pub fn host_key(&self, i: usize) -> SigningKey {
        self.host_wallet(i).signer().clone()
    }

    /// Host `i`'s address.
    pub fn host_address(&self, i: usize) -> Address {
        fabstir_core::auth::address_of(&self.host_key(i))
    }

    /// A funded account that is not the client.
    pub fn intruder_key(&self) -> SigningKey {
        self.chain.others()[0].wallet.signer().clone()
    }

    /// Host `i`'s configuration: loopback only, its own storage folder, metrics on.
    pub fn host_config(&self, i: usize) -> NodeConfig {
        let models = vec![ModelConfig {
            name: MODEL.into(),
            backend: BackendConfig::Embedded {
                checkpoint: checkpoint(),
                tokenizer: None,
            },
            prices: BTreeMap::from([
                ("USDC".to_owned(), USDC_PRICE_HUMAN.to_owned()),
                ("ETH".to_owned(), ETH_PRICE_HUMAN.to_owned()),
            ]),
        }];
        let storage = self.dir.path().join(format!("host-{i}"));
        NodeConfig {
            rpc_url: self.chain.endpoint(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            max_concurrent: 2,
            queue: 8,
            max_tokens: 64,
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            poll_interval: Duration::from_millis(50),
            ..NodeConfig::new(self.deployment_path.clone(), storage, models)
        }
    }

    /// Starts (or restarts) host `i`.
    pub async fn start_host(&self, i: usize) -> RunningNode {
        fabstir_node::start(&self.host_config(i), self.host_key(i))
            .await
            .unwrap()
    }

    /// Starts host `i` and a client peer connected to it.
    pub async fn host_and_client(&self, i: usize) -> (RunningNode, Network) {
        let host = self.start_host(i).await;
        let client = self.client_network().await;
        dial(&client, &host).await;
        (host, client)
    }

    /// A plain client peer: no host service, the chain as its peer registry.
    pub async fn client_network(&self) -> Network {
        let config = P2pConfig {
            chain_id: self.deployment.chain_id,
            marketplace: self.deployment.contracts.job_marketplace,
            ..P2pConfig::loopback()
        };
        Network::spawn(
            config,
            Keypair::generate_ed25519(),
            Arc::new(ChainPeerRegistry::new(self.manager.clone())),
            None,
        )
        .await
        .unwrap()
    }

    /// Job terms: `model`, `prompt`'s hash, [`MAX_TOKENS`], `price`, an hour to run.
    pub async fn details(&self, model: &str, prompt: &str, price: u64) -> JobDetails {
        self.chain
            .job_details(model, prompt, MAX_TOKENS, price, 3_600)
            .await
            .unwrap()
    }

    /// Posts a USDC job: approves the marketplace for `amount`, then posts.
    pub async fn post_usdc(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        amount: u64,
    ) -> PostedJob {
        let amount = TokenAmount::from_base_units(amount);
        self.manager
            .approve(
                self.usdc,
                self.manager.payment_spender(),
                amount,
                &self.client,
            )
            .await
            .unwrap();
        self.manager
            .post_job_with_token(details, requirements, self.usdc, amount, &self.client)
            .await
            .unwrap()
    }

    /// Posts a USDC job for [`MODEL`] and the empty prompt, assigned to host `i` and escrowing
    /// the most it can cost, and waits until it is claimed.
    pub async fn claimed_usdc_job(&self, i: usize) -> JobId {
        let details = self.details(MODEL, "", USDC_PRICE).await;
        let escrow = u64::from(MAX_TOKENS) * USDC_PRICE;
        let requirements = assigned(self.host_address(i));
        let job = self.post_usdc(&details, &requirements, escrow).await.job;
        self.wait_status(job, JobStatus::Claimed).await;
        job
    }

    /// Posts an ETH job escrowing `amount` wei.
    pub async fn post_eth(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        amount: u64,
    ) -> PostedJob {
        self.manager
            .post_job(
                details,
                requirements,
                TokenAmount::from_base_units(amount),
                &self.client,
            )
            .await
            .unwrap()
    }

    /// `owner`'s balance of `token` (zero address: ETH), in base units.
    pub async fn balance(&self, token: Address, owner: Address) -> U256 {
        self.chain.balance(token, owner).await.unwrap()
    }

    /// What `token` a settlement between `client` and `host` moves: theirs (the host's with
    /// its earnings credited in the marketplace), the treasury's and the marketplace's own.
    pub async fn parties(&self, token: Address, client: Address, host: Address) -> Balances {
        let escrow = self.deployment.contracts.job_marketplace;
        let accounts = [client, host, self.treasury, escrow];
        self.chain.holdings(token, &accounts).await.unwrap()
    }

    /// What the escrow holds of `token`.
    pub async fn escrow(&self, token: Address) -> U256 {
        self.manager
            .escrow_balance(token)
            .await
            .unwrap()
            .base_units()
    }

    /// Polls the chain until `job` is in `status`.
    pub async fn wait_status(&self, job: JobId, status: JobStatus) -> OnChainJob {
        let manager = &self.manager;
        let found = try_wait_for(move || async move {
            let current = manager.job(job).await.unwrap();
            (current.status == status).then_some(current)
        })
        .await;
        match found {
            Some(found) => found,
            None => {
                let now = self.manager.job(job).await.unwrap().status;
                panic!("timed out after {WAIT:?} waiting for job {job} to be {status}; it is {now}")
            }
        }
    }

    /// `job`'s JobCompleted event, waiting for it.
    pub async fn completed(&self, job: JobId) -> (LoggedEvent, Completed) {
        let manager = &self.manager;
        wait_for(&format!("JobCompleted for job {job}"), move || async move {
            let events = manager.job_events(job, 0).await.unwrap();
            events
                .into_iter()
                .find_map(|logged| match logged.event.outcome() {
                    Some(JobOutcome::Settled(s)) => {
                        let completed = Completed {
                            host: s.host,
                            result_cid: s.result_cid,
                            tokens_used: U256::from(s.tokens_used),
                            paid: s.paid.base_units(),
                            fee: s.fee.base_units(),
                            refund: s.refund.base_units(),
                        };
                        Some((logged, completed))
                    }
                    _ => None,
                })
        })
        .await
    }

    /// The transaction hash of `job`'s JobClaimed event.
    pub async fn claim_tx(&self, job: JobId) -> H256 {
        let events = self.manager.job_events(job, 0).await.unwrap();
        events
            .iter()
            .find(|e| matches!(e.event, MarketplaceEvent::JobClaimed { .. }))
            .map(|e| e.tx_hash)
            .unwrap()
    }

    /// What a mined transaction cost its sender in gas, in wei.
    pub async fn gas_cost(&self, tx: H256) -> U256 {
        self.chain.gas_cost(tx).await.unwrap()
    }

    /// The protocol fee in basis points.
    pub async fn fee_bps(&self) -> u64 {
        u64::from(self.manager.fee_bps().await.unwrap())
    }

    /// Transactions `address` has sent.
    pub async fn nonce(&self, address: Address) -> U256 {
        self.chain.nonce(address).await.unwrap()
    }
}

/// Requirements that assign a job to `host`.
pub fn assigned(host: Address) -> JobRequirements {
    JobRequirements {
        assigned_host: Some(host),
    }
}

/// A JobCompleted event's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub host: Address,
    /// `None`: the bytes submitted are not a CID.
    pub result_cid: Option<Cid>,
    pub tokens_used: U256,
    pub paid: U256,
    pub fee: U256,
    pub refund: U256,
}

/// What the contract must pay for `tokens` at `price` from `escrow` with `fee_bps`:
/// `(host paid, treasury fee, client refund)`.
pub fn settlement(tokens: u64, price: u64, escrow: u64, fee_bps: u64) -> (U256, U256, U256) {
    let cost = U256::from(tokens) * U256::from(price);
    assert!(cost <= U256::from(escrow), "a job is fully funded");
    let fee = cost * U256::from(fee_bps) / U256::from(10_000u64);
    (cost - fee, fee, U256::from(escrow) - cost)
}

/// Polls `check` every 50 ms until it returns a value; `None` after [`WAIT`].
pub async fn try_wait_for<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let polling = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(WAIT, polling).await.ok()
}

/// Polls `check` every 50 ms until it returns a value; panics after [`WAIT`] with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_wait_for(check).await {
        Some(value) => value,
        None => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Shuts the client peer down, then stops the hosts.
pub async fn shut_down(client: Network, hosts: impl IntoIterator<Item = RunningNode>) {
    client.shutdown().await.unwrap();
    for host in hosts {
        host.stop().await.unwrap();
    }
}

/// Connects the client to a running host at its current addresses.
pub async fn dial(client: &Network, node: &RunningNode) {
    for addr in node.listen_addrs().await.unwrap() {
        client.dial(addr).await.unwrap();
    }
}

/// A greedy prompt frame (the test model has no tokenizer: the prompt is empty or token ids).
pub fn prompt(text: &str) -> PromptFrame {
    PromptFrame {
        prompt: text.to_owned(),
        temperature_milli: 0,
        top_p_milli: 1_000,
        seed: 42,
    }
}

/// What a client received on a stream.
#[derive(Debug)]
pub struct Streamed {
    pub text: String,
    pub tokens: u64,
    pub done: StreamDone,
}

/// Authenticates with `key`, sends `prompt` and reads the stream to its end.
pub async fn stream_job(
    client: &Network,
    host: PeerId,
    job: JobId,
    key: &SigningKey,
    prompt_text: &str,
) -> fabstir_p2p::Result<Streamed> {
    let mut stream = client
        .open_stream(host, job, Arc::new(key.clone()), prompt(prompt_text))
        .await?;
    let mut text = String::new();
    let mut tokens = 0u64;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Tokens(batch) => {
                text.push_str(&batch.text());
                tokens += u64::try_from(batch.tokens.len()).unwrap();
            }
            StreamEvent::Done(done) => return Ok(Streamed { text, tokens, done }),
        }
    }
    panic!("the stream of job {job} ended without its final frame");
}

/// Fetches `job`'s result `cid` from `host` over `/fabstir/result/1.0.0` as `key` (the job's
/// client), verifying the bytes against it.
pub async fn fetch_verified(
    client: &Network,
    host: PeerId,
    job: JobId,
    cid: &Cid,
    key: &SigningKey,
) -> Option<Vec<u8>> {
    client.fetch_result(host, job, cid, key).await.unwrap()
}

/// `GET /metrics` from a node's endpoint: the HTTP response's body.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200 OK"),
        "metrics answered: {response}"
    );
    assert!(
        response.contains("content-type: text/plain; version=0.0.4"),
        "not Prometheus text: {response}"
    );
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

/// One sample's value from Prometheus text (`name{labels}` as written), if present.
pub fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Posts a USDC job assigned to `host_index`, streams it with the client's key and waits for
/// its settlement; returns the job and what was streamed.
pub async fn run_usdc_job(
    env: &Env,
    client: &Network,
    node: &RunningNode,
    host_index: usize,
) -> (JobId, Streamed) {
    let job = env.claimed_usdc_job(host_index).await;
    let streamed = stream_job(client, node.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    env.wait_status(job, JobStatus::Completed).await;
    (job, streamed)
}
