//! The full flow with three hosts, for USDC and ETH, with exact balances.

use ethers::types::U256;
use fabstir_core::{JobState, TokenAmount};
use fabstir_sdk::JobRequest;

use crate::common::{accrued_fees, balance, client, credit, devnet, treasury};

async fn full_flow(token: &str) {
    let devnet = devnet(3).await;
    let sdk = devnet.client_sdk().await.unwrap();
    let client = client(&devnet);
    let treasury = treasury(&devnet);
    let model = devnet.nodes[0]
        .as_ref()
        .unwrap()
        .host
        .models()
        .next()
        .unwrap()
        .1
        .name
        .clone();
    let client_before = balance(&sdk, client, token).await;
    let treasury_before = balance(&sdk, treasury, token).await;
    let fees_before = accrued_fees(&devnet, token).await;
    let hosts: Vec<_> = devnet
        .nodes
        .iter()
        .flatten()
        .map(|node| node.host.address())
        .collect();
    let mut earned_before = Vec::new();
    for &host in &hosts {
        earned_before.push(credit(&devnet, host, token).await);
    }

    let mut handle = sdk
        .submit_job(JobRequest::new(model, "").pay_with(token).max_tokens(24))
        .await
        .unwrap();
    let mut streamed = String::new();
    while let Some(text) = handle.next_tokens().await {
        streamed.push_str(&text);
    }
    let result = handle.result().await.unwrap();
    assert_eq!(result.text, streamed, "the result is what streamed");
    assert_eq!(result.cid, fabstir_storage::cid_of(streamed.as_bytes()));
    assert!(result.tokens_used > 0 && result.tokens_used <= 24);
    assert_eq!(result.attempts, 1);

    // Exact balances: the client paid escrow - refund = paid + fee; the host got `paid`;
    // `fee` accrued for the treasury, which received nothing yet.
    let status = sdk.job_status(result.job).await.unwrap();
    assert_eq!(status.state, JobState::PaymentReleased);
    assert_eq!(status.result_cid, Some(result.cid));
    let spent = result.paid.checked_add(result.fee).unwrap();
    assert_eq!(status.amount.checked_sub(result.refund).unwrap(), spent);
    let client_after = balance(&sdk, client, token).await;
    if token == "ETH" {
        // Gas is paid in ETH too: the client spent at least the job's cost.
        assert!(client_before.checked_sub(client_after).unwrap() >= spent);
    } else {
        assert_eq!(client_before.checked_sub(client_after).unwrap(), spent);
    }
    assert_eq!(balance(&sdk, treasury, token).await, treasury_before);
    // The host that served is credited exactly `paid`; the others nothing.
    for (host, before) in hosts.iter().zip(earned_before) {
        let earned = credit(&devnet, *host, token)
            .await
            .checked_sub(before)
            .unwrap();
        let expected = if *host == result.host_address {
            result.paid
        } else {
            TokenAmount::ZERO
        };
        assert_eq!(earned, expected, "earnings of {host:#x}");
    }
    assert_eq!(
        accrued_fees(&devnet, token)
            .await
            .checked_sub(fees_before)
            .unwrap(),
        result.fee
    );
    let price = sdk.token(token).unwrap();
    let per_token = match token {
        "ETH" => TokenAmount(U256::exp10(9)),
        _ => TokenAmount::from_base_units(1u64),
    };
    assert_eq!(result.token, price);
    assert_eq!(spent, per_token.checked_mul(result.tokens_used).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdc_job_end_to_end_with_exact_balances() {
    full_flow("USDC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eth_job_end_to_end_with_exact_balances() {
    full_flow("ETH").await;
}
