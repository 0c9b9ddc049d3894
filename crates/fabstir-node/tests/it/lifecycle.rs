//! The happy path with two hosts: a USDC job and an ETH job each go posted -> claimed ->
//! streamed -> result stored -> submitted -> paid, with exact balances; the streamed text is the
//! stored result, its CID is the one streamed and the one on chain; `/metrics` counts the job.

use std::net::SocketAddr;

use fabstir_contracts::testing::Balances;
use fabstir_contracts::{JobStatus, LoggedEvent};
use fabstir_core::JobId;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::{Address, U256};
use fabstir_core::wire::{NegotiationRequest, NegotiationResponse};
use fabstir_node::RunningNode;
use fabstir_p2p::Network;

use crate::common::{
    ETH_PRICE, Env, MAX_TOKENS, MODEL, Streamed, USDC_PRICE, assigned, dial, fetch_verified,
    sample, scrape, settlement, shut_down, stream_job, wait_for,
};

/// Checks what every finished job must satisfy: the streamed text is the stored result (fetched
/// and verified over the result protocol by the job's client, refused to anyone else), its CID
/// is the final frame's and the one on chain.
async fn check_result(
    env: &Env,
    client: &Network,
    node: &RunningNode,
    (job, streamed): (JobId, &Streamed),
    on_chain: Option<Cid>,
) {
    assert!(!streamed.text.is_empty(), "nothing was streamed");
    assert_eq!(streamed.tokens, streamed.done.tokens_used);
    assert!(streamed.tokens <= u64::from(MAX_TOKENS));
    let cid = fabstir_storage::cid_of(streamed.text.as_bytes());
    assert_eq!(streamed.done.result_cid, cid, "final frame's CID");
    assert_eq!(on_chain, Some(cid), "CID submitted on chain");
    let stored = fetch_verified(client, node.peer_id(), job, &cid, &env.client_key)
        .await
        .expect("the host serves the result it streamed");
    assert_eq!(stored, streamed.text.as_bytes());
    // The CID is public (it is on chain): anyone else asking for the result is refused.
    match client
        .fetch_result(node.peer_id(), job, &cid, &env.intruder_key())
        .await
    {
        Err(fabstir_p2p::Error::Remote {
            code: fabstir_core::wire::StreamErrorCode::AuthFailed,
            ..
        }) => {}
        other => panic!("another client got job {job}'s result: {other:?}"),
    }
}

/// Who serves a job and what it pays: the host, the price per token and the escrow.
struct Terms<'a> {
    node: &'a RunningNode,
    host: Address,
    price: u64,
    escrow: u64,
}

/// Waits until `job` is completed and checks its JobCompleted event against what was streamed
/// and what `terms` imply, and the result ([`check_result`]); returns the event and the
/// settlement `(host paid, treasury fee, client refund)`.
async fn check_completed(
    env: &Env,
    client: &Network,
    job: JobId,
    streamed: &Streamed,
    terms: &Terms<'_>,
) -> (LoggedEvent, (U256, U256, U256)) {
    env.wait_status(job, JobStatus::Completed).await;
    let (submitted, completed) = env.completed(job).await;
    assert_eq!(completed.host, terms.host);
    assert_eq!(completed.tokens_used, U256::from(streamed.done.tokens_used));
    check_result(
        env,
        client,
        terms.node,
        (job, streamed),
        completed.result_cid,
    )
    .await;
    let tokens = streamed.done.tokens_used;
    let paid = settlement(tokens, terms.price, terms.escrow, env.fee_bps().await);
    assert_eq!((completed.paid, completed.fee, completed.refund), paid);
    (submitted, paid)
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

    // USDC, assigned to host A and claimed by its chain watcher. The escrow is exactly the
    // most the job can cost (the marketplace takes no other amount).
    let usdc = env.usdc;
    let escrow = u64::from(MAX_TOKENS) * USDC_PRICE;
    let before = env.parties(usdc, me, a).await;
    let details = env.details(MODEL, "", USDC_PRICE).await;
    let job = env.post_usdc(&details, &assigned(a), escrow).await.job;
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
    let terms = Terms {
        node: &host_a,
        host: a,
        price: USDC_PRICE,
        escrow,
    };
    let (_, (paid, fee, refund)) = check_completed(&env, &client, job, &streamed, &terms).await;
    assert_eq!(paid + fee + refund, U256::from(escrow));
    let after = env.parties(usdc, me, a).await;
    assert_eq!(
        after.of(me),
        before.of(me) - U256::from(escrow) + refund,
        "client USDC"
    );
    assert_eq!(after.of(a), before.of(a) + paid, "host USDC");
    check_fee_and_escrow(&env, &before, &after, fee, U256::zero());

    // `/metrics` on host A counts the completed job and its tokens (the counter is bumped
    // once the submission's receipt is in, so it may trail the chain by a moment).
    let metrics = host_a.metrics_addr.expect("metrics enabled");
    let body = one_completed_job(metrics, "host A").await;
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

    // ETH, assigned to host B and announced to it peer to peer.
    let eth = Address::zero();
    let escrow = u64::from(MAX_TOKENS) * ETH_PRICE;
    let before = env.parties(eth, me, b).await;
    let details = env.details(MODEL, "", ETH_PRICE).await;
    let posted = env.post_eth(&details, &assigned(b), escrow).await;
    let job = posted.job;
    let answer = client
        .negotiate(host_b.peer_id(), NegotiationRequest::Posted { job })
        .await
        .unwrap();
    assert_eq!(answer, NegotiationResponse::Accepted { job });
    let claimed = env.wait_status(job, JobStatus::Claimed).await;
    assert_eq!(claimed.host, Some(b));
    let streamed = stream_job(&client, host_b.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    let terms = Terms {
        node: &host_b,
        host: b,
        price: ETH_PRICE,
        escrow,
    };
    let (submitted, (paid, fee, refund)) =
        check_completed(&env, &client, job, &streamed, &terms).await;
    let after = env.parties(eth, me, b).await;
    let client_gas = posted.tx.fee_wei();
    assert_eq!(
        after.of(me),
        before.of(me) - U256::from(escrow) - client_gas + refund,
        "client ETH"
    );
    // The host paid gas for its claim and its submission and nothing else.
    let host_gas =
        env.gas_cost(env.claim_tx(job).await).await + env.gas_cost(submitted.tx_hash).await;
    assert_eq!(after.of(b), before.of(b) + paid - host_gas, "host ETH");
    check_fee_and_escrow(&env, &before, &after, fee, client_gas + host_gas);

    // Each host ran only its own job.
    let metrics_b = host_b.metrics_addr.expect("metrics enabled");
    let body = one_completed_job(metrics_b, "host B").await;
    assert_eq!(
        sample(&body, "fabstir_tokens_generated_total"),
        Some(streamed.done.tokens_used)
    );
    let body = scrape(metrics).await;
    assert_eq!(
        sample(&body, "fabstir_jobs_total{state=\"completed\"}"),
        Some(1)
    );

    shut_down(client, [host_a, host_b]).await;
}

/// Checks the rest of a settlement from the parties' balances before and after: the fee
/// accrued in the escrow for the treasury (which received nothing yet), the escrow holds what
/// it held plus that fee, and the parties together hold what they held less the `gas` they
/// paid.
fn check_fee_and_escrow(env: &Env, before: &Balances, after: &Balances, fee: U256, gas: U256) {
    let token = if before.token().is_zero() {
        "ETH"
    } else {
        "USDC"
    };
    let (treasury, escrow) = (env.treasury, env.deployment.contracts.job_marketplace);
    assert_eq!(after.of(treasury), before.of(treasury), "treasury {token}");
    let left = after.of(escrow);
    assert_eq!(
        left,
        before.of(escrow) + fee,
        "{token} left in escrow: the fee"
    );
    after.assert_conserved_since(before, gas);
}

/// Waits until the metrics at `addr` count one completed job; returns them.
async fn one_completed_job(addr: SocketAddr, host: &str) -> String {
    let what = format!("{host}'s metrics to count the completed job");
    wait_for(&what, move || async move {
        let body = scrape(addr).await;
        (sample(&body, "fabstir_jobs_total{state=\"completed\"}") == Some(1)).then_some(body)
    })
    .await
}
