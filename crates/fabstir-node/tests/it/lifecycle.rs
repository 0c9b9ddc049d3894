//! The happy path with two hosts: a USDC job and an ETH job each go posted -> claimed ->
//! streamed -> result stored -> submitted -> paid, with exact balances; the streamed text is the
//! stored result, its CID is the one streamed and the one on chain; `/metrics` counts the job.

use fabstir_contracts::JobStatus;
use fabstir_core::JobRequirements;
use fabstir_core::primitives::{Address, U256};
use fabstir_core::wire::{JobRequest, JobResponse};
use fabstir_node::RunningNode;
use fabstir_p2p::Network;

use crate::common::{
    ETH_PRICE, Env, MAX_TOKENS, MODEL, Streamed, USDC_PRICE, dial, fetch_verified, sample, scrape,
    settlement, stream_job, wait_for,
};

/// Checks what every finished job must satisfy: the streamed text is the stored result (fetched
/// and verified over the result protocol), its CID is the final frame's and the one on chain.
async fn check_result(client: &Network, node: &RunningNode, streamed: &Streamed, on_chain: &[u8]) {
    assert!(!streamed.text.is_empty(), "nothing was streamed");
    assert_eq!(streamed.tokens, streamed.done.tokens_used);
    assert!(streamed.tokens <= u64::from(MAX_TOKENS));
    let cid = fabstir_storage::cid_of(streamed.text.as_bytes()).to_string();
    assert_eq!(streamed.done.result_cid, cid, "final frame's CID");
    assert_eq!(on_chain, cid.as_bytes(), "CID submitted on chain");
    let stored = fetch_verified(client, node.peer_id(), &cid)
        .await
        .expect("the host serves the result it streamed");
    assert_eq!(stored, streamed.text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdc_and_eth_jobs_are_streamed_stored_submitted_and_paid_exactly() {
    let env = Env::new().await;
    let host_a = env.start_host(0).await;
    let host_b = env.start_host(1).await;
    let (a, b) = (env.host_address(0), env.host_address(1));
    let client = env.client_network().await;
    dial(&client, &host_a).await;
    dial(&client, &host_b).await;
    let me = fabstir_core::auth::address_of(&env.client_key);
    let fee_bps = env.fee_bps().await;
    assert!(fee_bps > 0, "the fee must be visible in the balances");

    // USDC, assigned to host A and claimed by its chain watcher. The escrow holds more than
    // the most the job can cost, so the client gets the difference back.
    let usdc = env.usdc;
    let escrow = u64::from(MAX_TOKENS) * USDC_PRICE + 5_000;
    let before = Balances::read(&env, usdc, me, a).await;
    let details = env.details(MODEL, "", USDC_PRICE).await;
    let job = env
        .post_usdc(
            &details,
            &JobRequirements {
                assigned_host: Some(a),
            },
            escrow,
        )
        .await
        .job;
    let claimed = env.wait_status(job, JobStatus::Claimed).await;
    assert_eq!(claimed.host, Some(a));
    assert_eq!(claimed.client, me);
    let streamed = stream_job(&client, host_a.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    assert!(
        streamed.text.starts_with('<'),
        "token ids: {}",
        streamed.text
    );
    env.wait_status(job, JobStatus::Completed).await;
    let (_, completed) = env.completed(job).await;
    assert_eq!(completed.host, a);
    assert_eq!(completed.tokens_used, U256::from(streamed.done.tokens_used));
    check_result(&client, &host_a, &streamed, &completed.result_cid).await;
    let (paid, fee, refund) = settlement(streamed.done.tokens_used, USDC_PRICE, escrow, fee_bps);
    assert_eq!(
        (completed.paid, completed.fee, completed.refund),
        (paid, fee, refund)
    );
    assert!(refund > U256::zero());
    let after = Balances::read(&env, usdc, me, a).await;
    assert_eq!(
        after.client,
        before.client - U256::from(escrow) + refund,
        "client USDC"
    );
    assert_eq!(after.host, before.host + paid, "host USDC");
    assert_eq!(after.treasury, before.treasury + fee, "treasury USDC");
    assert_eq!(after.escrow, before.escrow, "USDC left in escrow");

    // `/metrics` on host A counts the completed job and its tokens (the counter is bumped
    // once the submission's receipt is in, so it may trail the chain by a moment).
    let metrics = host_a.metrics_addr.expect("metrics enabled");
    let body = wait_for(
        "host A's metrics to count the completed job",
        move || async move {
            let body = scrape(metrics).await;
            (sample(&body, "fabstir_jobs_total{state=\"completed\"}") == Some(1)).then_some(body)
        },
    )
    .await;
    assert!(body.contains("# TYPE fabstir_jobs_total counter"), "{body}");
    assert_eq!(
        sample(&body, "fabstir_jobs_total{state=\"claimed\"}"),
        Some(1)
    );
    assert_eq!(
        sample(&body, "fabstir_jobs_total{state=\"refused\"}"),
        Some(0)
    );
    assert_eq!(
        sample(&body, "fabstir_tokens_generated_total"),
        Some(streamed.done.tokens_used)
    );
    assert_eq!(sample(&body, "fabstir_errors_total"), Some(0));

    // ETH, assigned to host B and announced to it peer to peer. The escrow covers fewer
    // tokens than may be generated, so the host is paid at most the escrow.
    let eth = Address::zero();
    let escrow = 3 * ETH_PRICE;
    let before = Balances::read(&env, eth, me, b).await;
    let details = env.details(MODEL, "", ETH_PRICE).await;
    let posted = env
        .post_eth(
            &details,
            &JobRequirements {
                assigned_host: Some(b),
            },
            escrow,
        )
        .await;
    let job = posted.job;
    let answer = client
        .negotiate(host_b.peer_id(), JobRequest::Posted { job })
        .await
        .unwrap();
    assert_eq!(answer, JobResponse::Accepted { job });
    let claimed = env.wait_status(job, JobStatus::Claimed).await;
    assert_eq!(claimed.host, Some(b));
    let streamed = stream_job(&client, host_b.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    env.wait_status(job, JobStatus::Completed).await;
    let (submitted, completed) = env.completed(job).await;
    assert_eq!(completed.host, b);
    assert_eq!(completed.tokens_used, U256::from(streamed.done.tokens_used));
    check_result(&client, &host_b, &streamed, &completed.result_cid).await;
    let (paid, fee, refund) = settlement(streamed.done.tokens_used, ETH_PRICE, escrow, fee_bps);
    assert_eq!(
        (completed.paid, completed.fee, completed.refund),
        (paid, fee, refund)
    );
    let after = Balances::read(&env, eth, me, b).await;
    let client_gas = posted.tx.fee_wei();
    assert_eq!(
        after.client,
        before.client - U256::from(escrow) - client_gas + refund,
        "client ETH"
    );
    // The host paid gas for its claim and its submission and nothing else.
    let host_gas =
        env.gas_cost(env.claim_tx(job).await).await + env.gas_cost(submitted.tx_hash).await;
    assert_eq!(after.host, before.host + paid - host_gas, "host ETH");
    assert_eq!(after.treasury, before.treasury + fee, "treasury ETH");
    assert_eq!(after.escrow, before.escrow, "ETH left in escrow");

    // Each host ran only its own job.
    let metrics_b = host_b.metrics_addr.expect("metrics enabled");
    let body = wait_for(
        "host B's metrics to count the completed job",
        move || async move {
            let body = scrape(metrics_b).await;
            (sample(&body, "fabstir_jobs_total{state=\"completed\"}") == Some(1)).then_some(body)
        },
    )
    .await;
    assert_eq!(
        sample(&body, "fabstir_tokens_generated_total"),
        Some(streamed.done.tokens_used)
    );
    let body = scrape(metrics).await;
    assert_eq!(
        sample(&body, "fabstir_jobs_total{state=\"completed\"}"),
        Some(1)
    );

    client.shutdown().await.unwrap();
    host_a.stop().await.unwrap();
    host_b.stop().await.unwrap();
}

/// The balances a settlement moves, in one token.
struct Balances {
    client: U256,
    host: U256,
    treasury: U256,
    escrow: U256,
}

impl Balances {
    async fn read(env: &Env, token: Address, client: Address, host: Address) -> Self {
        Self {
            client: env.balance(token, client).await,
            host: env.balance(token, host).await,
            treasury: env.balance(token, env.treasury).await,
            escrow: env.escrow(token).await,
        }
    }
}
