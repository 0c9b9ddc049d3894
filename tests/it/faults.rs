//! Fault injection: an RPC outage in the middle of a job, a client that restarts mid-job,
//! and transactions that revert (caught before sending, or mined). Each ends with the client's funds either spent on a
//! completed job or returned.

use std::time::Duration;

use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_contracts::anvil::RpcProxy;
use fabstir_core::job::prompt_hash;
use fabstir_core::{JobDetails, JobRequirements, JobState, ModelId, TokenAmount};
use fabstir_payments::JobPayment;
use fabstir_sdk::SdkEvent;
use fabstir_sdk::{Error, FabstirSdk, JobRequest};

use crate::common::{balance, chain_balance, client, model_of};

/// Posts a 50-token USDC job for `model`, without negotiating (as a client that
/// then "crashes" would), with about the shortest deadline the marketplace takes. Returns the job and its escrow.
async fn post_short_job(
    devnet: &Devnet,
    sdk: &FabstirSdk,
    model: &str,
    assigned_host: Option<ethers::types::Address>,
) -> (fabstir_core::JobId, TokenAmount) {
    let usdc = sdk.token("USDC").unwrap();
    let now = sdk.chain().now().await.unwrap();
    let details = JobDetails {
        model: ModelId::from_name(model),
        prompt_hash: prompt_hash("Once upon a time"),
        max_tokens: 50,
        price_per_token: usdc.parse_amount("0.000001").unwrap(),
        // A few seconds of margin: the post's block may be a second or two after `now`.
        deadline: now + fabstir_contracts::LOCAL_RULES.min_job_duration + 5,
    };
    let payment = JobPayment::for_job(usdc, &details).unwrap();
    let wallet = devnet
        .wallet(fabstir_cli::devnet::accounts::CLIENT)
        .unwrap();
    let job = sdk
        .chain()
        .post_job(
            &details,
            &JobRequirements { assigned_host },
            &payment,
            wallet.signer(),
        )
        .await
        .unwrap();
    (job, payment.amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_outage_during_a_job_is_ridden_out() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 1;
    let devnet = Devnet::start(config).await.unwrap();
    let proxy = RpcProxy::start(devnet.anvil.endpoint()).await.unwrap();
    let mut sdk_config = devnet.sdk_config.clone();
    sdk_config.rpc_url = proxy.url.clone();
    let sdk = FabstirSdk::connect(sdk_config, &devnet.deployment)
        .await
        .unwrap();
    sdk.set_signer(
        devnet
            .wallet(fabstir_cli::devnet::accounts::CLIENT)
            .unwrap(),
    )
    .unwrap();
    let client = client(&devnet);
    let before = balance(&sdk, client, "USDC").await;
    let mut events = sdk.events();

    let handle = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(20))
        .await
        .unwrap();
    // The endpoint goes down as soon as the job is posted, while the SDK waits for the claim.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(SdkEvent::JobStateChanged {
                to: JobState::Posted,
                ..
            })) => break,
            Ok(Ok(_)) => {}
            other => panic!("the job was not posted: {other:?}"),
        }
    }
    proxy.set_available(false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.set_available(true);

    let result = handle.result().await.unwrap();
    assert_eq!(
        result.attempts, 1,
        "the outage did not make the SDK give up on the host"
    );
    assert!(result.failed_jobs.is_empty());
    let after = balance(&sdk, client, "USDC").await;
    assert_eq!(
        before.checked_sub(after).unwrap(),
        result.paid.checked_add(result.fee).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restarted_mid_job_recovers_its_state_and_funds() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 1;
    let devnet = Devnet::start(config).await.unwrap();
    let client = client(&devnet);

    // The first client posts an open job (a host's watcher claims it), then "crashes"
    // before it opens the stream.
    let job = {
        let sdk = devnet.client_sdk().await.unwrap();
        let (job, _) = post_short_job(&devnet, &sdk, &model_of(&devnet), None).await;
        let claimed = tokio::time::timeout(Duration::from_secs(20), async {
            while sdk.job_status(job).await.unwrap().state != JobState::Claimed {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(claimed.is_ok(), "a host claimed the open job");
        job
    };

    // A new client process: state from the chain, then the escrow back.
    let sdk = devnet.client_sdk().await.unwrap();
    let eth_before = chain_balance(&devnet, client, "ETH").await;
    let usdc_before = chain_balance(&devnet, client, "USDC").await;
    let report = sdk.recover_job(job).await.unwrap();
    assert_eq!(report.state, JobState::Claimed);
    assert_eq!(report.client, client);
    assert!(report.host.is_some());

    // A transaction that would revert (cancelling a claimed job) is a clear error and costs
    // nothing: the revert is caught before anything is sent.
    let err = sdk.cancel(job).await.unwrap_err();
    assert!(matches!(err, Error::Contracts(_)), "{err}");
    assert!(err.to_string().contains("claimed"), "{err}");
    assert_eq!(
        chain_balance(&devnet, client, "ETH").await,
        eth_before,
        "no gas was spent"
    );

    let recovered = tokio::time::timeout(Duration::from_secs(60), sdk.recover_funds(job))
        .await
        .expect("recovery finishes after the close window")
        .unwrap();
    assert_eq!(recovered.state, JobState::Failed);
    assert_eq!(recovered.refunded, Some(report.amount));
    assert_eq!(
        chain_balance(&devnet, client, "USDC").await,
        usdc_before.checked_add(report.amount).unwrap(),
        "the whole escrow came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_mined_and_reverted_is_a_clear_error_and_costs_only_gas() {
    use ethers::abi::AbiEncode as _;
    use ethers::providers::Middleware as _;
    use fabstir_contracts::anvil::{mine, send_ahead, set_automine, wait_for_pending};
    use fabstir_contracts::bindings::job_marketplace::ClaimJobCall;

    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 1;
    let mut devnet = Devnet::start(config).await.unwrap();
    let host = devnet.nodes[0].as_ref().unwrap().host.address();
    let model = model_of(&devnet);
    // The host's software is down (its key still claims, below, by hand).
    devnet.stop_node(0).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let client = client(&devnet);
    let (job, escrow) = post_short_job(&devnet, &sdk, &model, Some(host)).await;
    let usdc_before = chain_balance(&devnet, client, "USDC").await;
    let eth_before = chain_balance(&devnet, client, "ETH").await;

    // The client's cancel and the host's claim race into the same block: the cancel passes
    // its gas estimate (the job is still posted) and waits in the pool, then the claim
    // overtakes it.
    let provider = devnet.anvil.provider().unwrap();
    set_automine(&provider, false).await.unwrap();
    // The cancelling client has its ETH balance cached from before.
    let canceller = devnet.client_sdk().await.unwrap();
    assert_eq!(balance(&canceller, client, "ETH").await, eth_before);
    let cancelling = tokio::spawn(async move {
        let cancelled = canceller.cancel(job).await;
        (canceller, cancelled)
    });
    wait_for_pending(&provider, 1, Duration::from_secs(10))
        .await
        .expect("the cancel reached the pool");
    let claim = ClaimJobCall {
        job_id: job.0.into(),
        terms: crate::common::manager(&devnet)
            .await
            .job_terms(job)
            .await
            .unwrap(),
    };
    let claim = send_ahead(
        &provider,
        host,
        devnet.deployment.contracts.job_marketplace,
        claim.encode().into(),
    )
    .await
    .unwrap();
    wait_for_pending(&provider, 2, Duration::from_secs(10))
        .await
        .expect("the claim reached the pool");
    mine(&provider).await.unwrap();
    set_automine(&provider, true).await.unwrap();

    let (canceller, cancelled) = cancelling.await.unwrap();
    let err = cancelled.unwrap_err();
    let Error::Contracts(fabstir_contracts::Error::TxFailed {
        gas_used,
        effective_gas_price,
        reason,
        ..
    }) = &err
    else {
        panic!("not a mined revert: {err}");
    };
    assert!(
        matches!(
            reason.as_deref(),
            Some(fabstir_contracts::Error::JobAlreadyClaimed { job: j, claimer })
                if *j == job && *claimer == host
        ),
        "the replay names the cause: {err}"
    );
    assert!(err.to_string().contains("reverted on chain"), "{err}");
    let receipt = provider
        .get_transaction_receipt(claim)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receipt.status, Some(1u64.into()), "the claim went through");

    // The reverted cancel cost its gas and nothing else: the escrow is still the job's.
    let gas = TokenAmount(*gas_used * *effective_gas_price);
    assert_eq!(
        chain_balance(&devnet, client, "ETH").await,
        eth_before.checked_sub(gas).unwrap()
    );
    assert_eq!(
        balance(&canceller, client, "ETH").await,
        eth_before.checked_sub(gas).unwrap(),
        "the SDK that sent it does not serve a balance cached from before the revert"
    );
    assert_eq!(chain_balance(&devnet, client, "USDC").await, usdc_before);
    let status = sdk.job_status(job).await.unwrap();
    assert_eq!(status.state, JobState::Claimed);
    assert_eq!(status.host, Some(host));

    // The host never serves it: the client asks to close, and after the close window it gets
    // the whole escrow back.
    let recovered = tokio::time::timeout(Duration::from_secs(60), sdk.recover_funds(job))
        .await
        .expect("recovery finishes after the close window")
        .unwrap();
    assert_eq!(recovered.refunded, Some(escrow));
    assert_eq!(
        chain_balance(&devnet, client, "USDC").await,
        usdc_before.checked_add(escrow).unwrap()
    );
}
