//! Receipts between a real host node and a hostile client on a real chain: a client that stops
//! acknowledging, one that forges a receipt, one that receipts more than the escrow covers, and
//! a contract wallet as the client (ERC-1271 on the stream and on chain). Each test reads the
//! settlement the node sent and the balances it moved, to the base unit.

use std::time::Duration;

use ethers::types::Bytes;
use fabstir_contracts::JobStatus;
use fabstir_contracts::bindings::erc20::Erc20Permit;
use fabstir_contracts::bindings::job_marketplace::{self, JobMarketplace};
use fabstir_contracts::bindings::rejecting_client::RejectingClient;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::primitives::{Address, H256, U256};
use fabstir_core::receipt::ReceiptDomain;
use fabstir_core::wire::StreamErrorCode;
use fabstir_core::{JobId, TokenAmount};
use fabstir_node::RunningNode;
use fabstir_p2p::Network;
use fabstir_p2p::testing::RawClient;

use crate::common::{
    Env, MODEL, USDC_PRICE, assigned, dial, prompt, settlement, shut_down, stream_job,
};

/// The hosts' credit window in these tests: a receipt every 4 counted tokens.
const WINDOW: u32 = 8;
/// Tokens asked for: enough to run well past a window.
const JOB_TOKENS: u32 = 48;

/// Host 0 with a small window and a short wait for receipts, and a client connected to it.
async fn small_window_host(env: &Env) -> (RunningNode, Network) {
    let mut config = env.host_config(0);
    config.credit_window = WINDOW;
    config.receipt_timeout = Duration::from_secs(1);
    let host = fabstir_node::start(&config, env.host_key(0)).await.unwrap();
    let client = env.client_network().await;
    dial(&client, &host).await;
    (host, client)
}

/// The escrow of a [`JOB_TOKENS`] job at the USDC price.
fn escrow() -> u64 {
    u64::from(JOB_TOKENS) * USDC_PRICE
}

/// Posts a [`JOB_TOKENS`] USDC job for host 0 and waits for its claim.
async fn claimed_job(env: &Env) -> JobId {
    let details = env
        .chain
        .job_details(MODEL, "", JOB_TOKENS, USDC_PRICE, 3_600)
        .await
        .unwrap();
    let job = env
        .post_usdc(&details, &assigned(env.host_address(0)), escrow())
        .await
        .job;
    env.wait_status(job, JobStatus::Claimed).await;
    job
}

fn domain(env: &Env) -> ReceiptDomain {
    ReceiptDomain {
        chain_id: env.deployment.chain_id,
        marketplace: env.deployment.contracts.job_marketplace,
    }
}

/// Opens `job`'s stream by hand as `key`.
async fn raw(env: &Env, client: &Network, host: &RunningNode, job: JobId) -> RawClient {
    let key = env.client_key.clone();
    RawClient::start(client, host.peer_id(), job, domain(env), key, prompt(""))
        .await
        .unwrap()
}

/// Waits for `job`'s settlement and checks it paid exactly `tokens` receipted tokens, split
/// to the base unit, and that the balances of `client` and the host moved by that much.
async fn assert_paid_for(env: &Env, job: JobId, client: Address, before: &Balances, tokens: u64) {
    env.wait_status(job, JobStatus::Completed).await;
    let (_, completed) = env.completed(job).await;
    assert_eq!(completed.tokens_used, U256::from(tokens), "tokens paid");
    let (paid, fee, refund) = settlement(tokens, USDC_PRICE, escrow(), env.fee_bps().await);
    assert_eq!(
        (completed.paid, completed.fee, completed.refund),
        (paid, fee, refund)
    );
    let host = env.host_address(0);
    let after = env.parties(env.usdc, client, host).await;
    assert_eq!(
        after.of(client),
        before.of(client) + refund,
        "client refund"
    );
    assert_eq!(after.of(host), before.of(host) + paid, "host credit");
    let market = env.deployment.contracts.job_marketplace;
    assert_eq!(
        after.of(market),
        before.of(market) - escrow() + fee,
        "escrow"
    );
    after.assert_conserved_since(before, U256::zero());
}

type Balances = fabstir_contracts::testing::Balances;

/// The client receipts 4 tokens and then stops: the node sends one window more, waits, ends
/// the stream as unacknowledged and settles on chain for the 4 receipted tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_acknowledging_gets_one_window_and_pays_its_receipts() {
    let env = Env::new().await;
    let (host, client) = small_window_host(&env).await;
    let job = claimed_job(&env).await;
    let me = address_of(&env.client_key);
    let before = env.parties(env.usdc, me, env.host_address(0)).await;

    let mut stream = raw(&env, &client, &host, job).await;
    assert_eq!(stream.challenge().credit_window, WINDOW);
    let (received, code) = stream.read_to_end(&[4]).await;
    assert_eq!(code, Some(StreamErrorCode::Unacknowledged));
    assert_eq!(
        received,
        4 + u64::from(WINDOW),
        "one window past the receipt"
    );
    assert_paid_for(&env, job, me, &before, 4).await;
    shut_down(client, [host]).await;
}

/// An honest receipt, then one signed by a stranger: the stream ends (`BadReceipt`) and the
/// node settles with the honest one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_receipt_ends_the_stream_and_the_last_good_one_is_paid() {
    let env = Env::new().await;
    let (host, client) = small_window_host(&env).await;
    let job = claimed_job(&env).await;
    let me = address_of(&env.client_key);
    let before = env.parties(env.usdc, me, env.host_address(0)).await;

    let mut stream = raw(&env, &client, &host, job).await;
    stream.read_until(2).await.unwrap();
    let honest = stream.receipt();
    let paid_for = honest.tokens;
    stream.send_receipt(honest).await.unwrap();
    stream.read_until(paid_for + 1).await.unwrap();
    let forged = stream.receipt_signed_by(&env.intruder_key());
    stream.send_receipt(forged).await.unwrap();
    let (received, code) = stream.read_to_end(&[]).await;
    assert_eq!(code, Some(StreamErrorCode::BadReceipt));
    assert!(received > paid_for);
    assert_paid_for(&env, job, me, &before, paid_for).await;
    shut_down(client, [host]).await;
}

/// A receipt, correctly signed by the client, for more tokens than the escrow covers (and than
/// were sent) is refused when it arrives, so it can never be the one a settlement is stuck on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_more_than_the_escrow_covers_is_refused_on_arrival() {
    let env = Env::new().await;
    let (host, client) = small_window_host(&env).await;
    let job = claimed_job(&env).await;
    let me = address_of(&env.client_key);
    let before = env.parties(env.usdc, me, env.host_address(0)).await;

    let mut stream = raw(&env, &client, &host, job).await;
    stream.read_until(2).await.unwrap();
    let honest = stream.receipt();
    let paid_for = honest.tokens;
    stream.send_receipt(honest).await.unwrap();
    let over = fabstir_core::receipt::Receipt {
        job,
        tokens: u64::from(JOB_TOKENS) + 1,
        transcript: H256::repeat_byte(7),
    };
    let signature = over.sign(&domain(&env), &env.client_key).unwrap().to_vec();
    stream
        .send_receipt(fabstir_core::receipt::SignedReceipt {
            tokens: over.tokens,
            transcript: over.transcript,
            signature,
        })
        .await
        .unwrap();
    let (_, code) = stream.read_to_end(&[]).await;
    assert_eq!(code, Some(StreamErrorCode::BadReceipt));
    assert_paid_for(&env, job, me, &before, paid_for).await;
    shut_down(client, [host]).await;
}

/// A contract wallet (ERC-1271, its owner's key signing for it) posts a job: the node accepts
/// its owner's answer to the challenge and its receipts by asking the wallet, and the
/// marketplace pays the receipted count by the same check on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_wallet_client_is_served_and_pays_by_its_receipts() {
    let env = Env::new().await;
    let (host, client) = env.host_and_client(0).await;
    let wallet = RejectingClient::deploy(env.client.clone(), ())
        .unwrap()
        .send()
        .await
        .unwrap();
    let market = env.deployment.contracts.job_marketplace;
    let amount = TokenAmount::from_base_units(escrow());
    env.manager
        .faucet_mint(env.usdc, wallet.address(), amount, &env.client)
        .await
        .unwrap();

    // The wallet approves the marketplace and posts, each through `execute`.
    let usdc = Erc20Permit::new(env.usdc, env.manager.provider().clone());
    let approve = usdc
        .approve(market, amount.base_units())
        .calldata()
        .unwrap();
    execute(&wallet, env.usdc, approve).await;
    let details = env
        .chain
        .job_details(MODEL, "", JOB_TOKENS, USDC_PRICE, 3_600)
        .await
        .unwrap();
    let abi = job_marketplace::JobDetails {
        model_id: details.model.0,
        prompt_hash: details.prompt_hash.0,
        max_tokens: details.max_tokens,
        price_per_token: details.price_per_token.base_units(),
        deadline: details.deadline,
    };
    let requirements = job_marketplace::JobRequirements {
        host: env.host_address(0),
    };
    let marketplace = JobMarketplace::new(market, env.manager.provider().clone());
    let post = marketplace
        .post_job_with_token(abi, requirements, env.usdc, amount.base_units())
        .calldata()
        .unwrap();
    execute(&wallet, market, post).await;
    let job = *env.manager.all_jobs().await.unwrap().last().unwrap();
    let claimed = env.wait_status(job, JobStatus::Claimed).await;
    assert_eq!(claimed.client, wallet.address());
    let before = env
        .parties(env.usdc, wallet.address(), env.host_address(0))
        .await;

    // A stranger's key is refused for the wallet's job: the wallet does not accept it.
    let stranger: SigningKey = env.intruder_key();
    let refused = RawClient::start(
        &client,
        host.peer_id(),
        job,
        domain(&env),
        stranger,
        prompt(""),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(fabstir_p2p::Error::Remote {
                code: StreamErrorCode::AuthFailed,
                ..
            })
        ),
        "{refused:?}"
    );

    // The owner's key streams and receipts for the wallet.
    let streamed = stream_job(&client, host.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    assert!(streamed.tokens > 0, "the wallet's job was served");
    assert_paid_for(&env, job, wallet.address(), &before, streamed.tokens).await;

    shut_down(client, [host]).await;
}

/// Sends `data` to `to` through the wallet and waits for it to be mined.
async fn execute<M: ethers::providers::Middleware + 'static>(
    wallet: &RejectingClient<M>,
    to: Address,
    data: Bytes,
) {
    wallet
        .execute(to, data)
        .send()
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap();
}
