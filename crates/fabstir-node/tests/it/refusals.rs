//! What a host refuses or ignores: a client that is not the job's, a prompt that does not match
//! the chain, a job for a model it does not serve, and a second stream for a job.

use std::sync::Arc;

use fabstir_contracts::JobStatus;
use fabstir_core::job::prompt_hash;
use fabstir_core::wire::{
    NegotiationRequest, NegotiationResponse, QuoteRequest, RejectReason, StreamErrorCode,
};
use fabstir_core::{JobId, JobRequirements, ModelId, TokenAmount};
use fabstir_node::RunningNode;
use fabstir_p2p::Network;
use futures::StreamExt as _;

use crate::common::{
    ETH_PRICE, Env, MAX_TOKENS, MODEL, OTHER_MODEL, Streamed, USDC_PRICE, assigned, dial, prompt,
    shut_down, stream_job, wait_for,
};

/// The job's own client streams it with the committed (empty) prompt: the host still serves
/// it and is paid.
async fn still_served(env: &Env, client: &Network, host: &RunningNode, job: JobId) -> Streamed {
    let streamed = stream_job(client, host.peer_id(), job, &env.client_key, "")
        .await
        .unwrap();
    assert!(streamed.done.tokens_used > 0);
    env.wait_status(job, JobStatus::Completed).await;
    streamed
}

/// The host's counters that show whether a prompt was read and run.
fn counters(node: &RunningNode) -> (u64, u64, u64) {
    let metrics = node.host.metrics();
    (
        metrics.jobs_refused.get(),
        metrics.tokens_generated.get(),
        metrics.jobs_completed.get(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_the_wrong_key_is_refused_before_the_prompt_is_read() {
    let env = Env::new().await;
    let (host, client) = env.host_and_client(0).await;
    let job = env.claimed_usdc_job(0).await;

    // The intruder answers the challenge with its own key: the host refuses it during the
    // handshake, so the client never gets to send the prompt.
    let intruder = env.intruder_key();
    let refused = client
        .open_stream(host.peer_id(), job, Arc::new(intruder.clone()), prompt(""))
        .await;
    match refused {
        Err(fabstir_p2p::Error::Remote {
            code: StreamErrorCode::AuthFailed,
            ..
        }) => {}
        other => panic!("expected AuthFailed during the handshake, got {other:?}"),
    }
    assert_eq!(counters(&host), (1, 0, 0), "refused, nothing generated");
    let job_now = env.manager.job(job).await.unwrap();
    assert_eq!(job_now.status, JobStatus::Claimed);
    assert_eq!(job_now.host, Some(env.host_address(0)));

    // The job is untouched: its real client still gets it done.
    let streamed = still_served(&env, &client, &host, job).await;
    let (_, completed) = env.completed(job).await;
    assert_eq!(completed.result_cid, Some(streamed.done.result_cid));

    shut_down(client, [host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_whose_hash_does_not_match_the_chain_is_refused() {
    let env = Env::new().await;
    let (host, client) = env.host_and_client(0).await;
    // The job commits to the empty prompt.
    let job = env.claimed_usdc_job(0).await;

    let mut stream = client
        .open_stream(
            host.peer_id(),
            job,
            Arc::new(env.client_key.clone()),
            prompt("1 2 3"),
        )
        .await
        .unwrap();
    match stream.next().await {
        Some(Err(fabstir_p2p::Error::Remote {
            code: StreamErrorCode::PromptMismatch,
            ..
        })) => {}
        other => panic!("expected PromptMismatch, got {other:?}"),
    }
    assert!(stream.next().await.is_none(), "nothing after the refusal");
    assert_eq!(counters(&host), (1, 0, 0), "refused, nothing generated");
    assert_eq!(
        env.manager.job(job).await.unwrap().status,
        JobStatus::Claimed
    );

    // The committed prompt is still accepted.
    still_served(&env, &client, &host, job).await;

    shut_down(client, [host]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_for_a_model_the_hosts_do_not_serve_is_ignored_and_can_be_cancelled() {
    let env = Env::new().await;
    let host_a = env.start_host(0).await;
    let host_b = env.start_host(1).await;
    let client = env.client_network().await;
    dial(&client, &host_a).await;
    let me = fabstir_core::auth::address_of(&env.client_key);

    // Asked peer to peer, a host declines the model.
    let quote = client
        .negotiate(
            host_a.peer_id(),
            NegotiationRequest::Quote(QuoteRequest {
                model: ModelId::from_name(OTHER_MODEL),
                max_tokens: MAX_TOKENS,
                token: env.usdc,
                offered_price_per_token: TokenAmount::from_base_units(USDC_PRICE),
                prompt_hash: prompt_hash(""),
                client: me,
            }),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            quote,
            NegotiationResponse::Rejected {
                reason: RejectReason::UnknownModel,
                ..
            }
        ),
        "{quote:?}"
    );

    // An open job for that model: neither watcher claims it, and a host told about it
    // peer to peer refuses it.
    let usdc_before = env.balance(env.usdc, me).await;
    let escrow_before = env.escrow(env.usdc).await;
    let details = env.details(OTHER_MODEL, "", USDC_PRICE).await;
    let escrow = u64::from(MAX_TOKENS) * USDC_PRICE;
    let other = env
        .post_usdc(&details, &JobRequirements::default(), escrow)
        .await
        .job;
    let answer = client
        .negotiate(host_a.peer_id(), NegotiationRequest::Posted { job: other })
        .await
        .unwrap();
    assert!(
        matches!(
            answer,
            NegotiationResponse::Rejected {
                reason: RejectReason::UnknownModel,
                ..
            }
        ),
        "{answer:?}"
    );

    // Jobs for the served model posted after it are claimed by each host's watcher, so both
    // watchers have gone past the unserved job's JobPosted event.
    let served = env.details(MODEL, "", ETH_PRICE).await;
    let eth_escrow = u64::from(MAX_TOKENS) * ETH_PRICE;
    for (i, host) in [(0, &host_a), (1, &host_b)] {
        let job = env
            .post_eth(&served, &assigned(env.host_address(i)), eth_escrow)
            .await
            .job;
        let claimed = env.wait_status(job, JobStatus::Claimed).await;
        assert_eq!(claimed.host, Some(env.host_address(i)));
        // The counter moves once the claim's receipt is in, a moment after the chain.
        let metrics = host.host.metrics().clone();
        wait_for(&format!("host {i} to count its claim"), move || {
            let metrics = metrics.clone();
            async move { (metrics.jobs_claimed.get() >= 1).then_some(()) }
        })
        .await;
    }
    for (i, host) in [(0, &host_a), (1, &host_b)] {
        let claims = host.host.metrics().jobs_claimed.get();
        assert_eq!(claims, 1, "host {i} claimed only the job for its model");
    }
    let ignored = env.manager.job(other).await.unwrap();
    assert_eq!(ignored.status, JobStatus::Posted);
    assert_eq!(ignored.host, None);

    // The client takes its money back in full.
    env.manager.cancel_job(other, &env.client).await.unwrap();
    assert_eq!(
        env.manager.job(other).await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(env.balance(env.usdc, me).await, usdc_before);
    assert_eq!(env.escrow(env.usdc).await, escrow_before);

    shut_down(client, [host_a, host_b]).await;
}

/// Attack: the client pays once and opens the stream for the same job again (with a new
/// seed), or after getting its escrow back. Defence: one stream per job, consumed when its
/// prompt is accepted, and the chain re-read when a stream opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_stream_for_a_served_job_is_refused_and_so_is_one_for_an_expired_job() {
    let env = Env::new().await;
    let (host, client) = env.host_and_client(0).await;
    let job = env.claimed_usdc_job(0).await;
    still_served(&env, &client, &host, job).await;
    let generated = host.host.metrics().tokens_generated.get();
    let again = client
        .open_stream(
            host.peer_id(),
            job,
            Arc::new(env.client_key.clone()),
            prompt(""),
        )
        .await;
    match again {
        Err(fabstir_p2p::Error::Remote {
            code: StreamErrorCode::AlreadyServed | StreamErrorCode::JobClosed,
            ..
        }) => {}
        other => panic!("expected the served job to be refused, got {other:?}"),
    }
    assert_eq!(
        host.host.metrics().tokens_generated.get(),
        generated,
        "nothing generated for the second stream"
    );

    // A claimed job the client closed and expired (its escrow refunded in full) is refused.
    let job = env.claimed_usdc_job(0).await;
    let before = env.balance(env.usdc, env.client.address()).await;
    env.manager.request_close(job, &env.client).await.unwrap();
    env.chain
        .advance_time(fabstir_contracts::LOCAL_RULES.close_window + 1)
        .await
        .unwrap();
    env.manager.expire_job(job, &env.client).await.unwrap();
    // A USDC job: the client's ETH pays the gas, its USDC comes back to the base unit.
    let refund = u64::from(MAX_TOKENS) * USDC_PRICE;
    assert_eq!(
        env.balance(env.usdc, env.client.address()).await,
        before + refund
    );
    let late = client
        .open_stream(
            host.peer_id(),
            job,
            Arc::new(env.client_key.clone()),
            prompt(""),
        )
        .await;
    match late {
        Err(fabstir_p2p::Error::Remote {
            code: StreamErrorCode::JobClosed,
            ..
        }) => {}
        other => panic!("expected JobClosed for the expired job, got {other:?}"),
    }
    assert_eq!(host.host.metrics().tokens_generated.get(), generated);
    shut_down(client, [host]).await;
}
