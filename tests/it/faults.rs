//! Fault injection: an RPC outage in the middle of a job, a client that restarts mid-job,
//! and a transaction that reverts. Each ends with the client's funds either spent on a
//! completed job or returned.

use std::time::Duration;

use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_contracts::anvil::RpcProxy;
use fabstir_core::job::prompt_hash;
use fabstir_core::{JobDetails, JobRequirements, JobState, ModelId, SdkEvent};
use fabstir_payments::JobPayment;
use fabstir_sdk::{Error, FabstirSdk, JobRequest};

use crate::common::{balance, client};

fn model_of(devnet: &Devnet) -> String {
    let node = devnet.nodes[0].as_ref().unwrap();
    node.host.models().next().unwrap().1.name.clone()
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
    let model = model_of(&devnet);
    let client = client(&devnet);

    // The first client posts an open job (a host's watcher claims it), then "crashes"
    // before it opens the stream.
    let job = {
        let sdk = devnet.client_sdk().await.unwrap();
        let usdc = sdk.token("USDC").unwrap();
        let now = sdk.chain().now().await.unwrap();
        let details = JobDetails {
            model: ModelId::from_name(&model),
            prompt_hash: prompt_hash("Once upon a time"),
            max_tokens: 50,
            price_per_token: usdc.parse_amount("0.000001").unwrap(),
            deadline: now + 4,
        };
        let payment = JobPayment::for_job(usdc, &details).unwrap();
        let wallet = devnet
            .wallet(fabstir_cli::devnet::accounts::CLIENT)
            .unwrap();
        let job = sdk
            .chain()
            .post_job(&details, &JobRequirements::default(), &payment, &wallet)
            .await
            .unwrap();
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
    let eth_before = balance(&sdk, client, "ETH").await;
    let usdc_before = balance(&sdk, client, "USDC").await;
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
        balance(&sdk, client, "ETH").await,
        eth_before,
        "no gas was spent"
    );

    let recovered = tokio::time::timeout(Duration::from_secs(60), sdk.recover_funds(job))
        .await
        .expect("recovery finishes after the deadline")
        .unwrap();
    assert_eq!(recovered.state, JobState::Failed);
    assert_eq!(recovered.refunded, Some(report.amount));
    assert_eq!(
        balance(&sdk, client, "USDC").await,
        usdc_before.checked_add(report.amount).unwrap(),
        "the whole escrow came back"
    );
}
