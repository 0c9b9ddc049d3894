//! Failover: a host killed mid-stream; and many jobs at once through one SDK.

use std::time::Duration;

use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_core::JobState;
use fabstir_sdk::JobRequest;
use fabstir_sdk::SdkEvent;

use crate::common::{balance, client, model_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_killed_mid_stream_fails_over_and_escrow_returns() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 2;
    config.token_delay = Some(Duration::from_millis(30));
    config.job_deadline = Duration::from_secs(40);
    config.stream_stall = Duration::from_secs(2);
    let mut devnet = Devnet::start(config).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let client = client(&devnet);
    let before = balance(&sdk, client, "USDC").await;
    let mut events = sdk.events();

    let handle = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(40))
        .await
        .unwrap();
    // Kill the host that streams the first token.
    let first_job = loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(SdkEvent::TokenReceived { job, .. })) => break job,
            Ok(Ok(_)) => {}
            other => panic!("no token arrived: {other:?}"),
        }
    };
    let serving = sdk.job_status(first_job).await.unwrap().host.unwrap();
    let index = devnet
        .nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.host.address() == serving))
        .unwrap();
    devnet.stop_node(index).await.unwrap();

    let result = handle.result().await.unwrap();
    assert_eq!(result.attempts, 2, "the job completed on the other host");
    assert_ne!(result.host_address, serving);
    assert_eq!(result.failed_jobs, vec![first_job]);
    assert!(!result.text.is_empty());

    // The first job's escrow comes back (expired after its deadline, since its host is gone).
    tokio::time::timeout(Duration::from_secs(60), sdk.wait_recoveries())
        .await
        .expect("the escrow is recovered");
    let first = sdk.job_status(first_job).await.unwrap();
    assert_eq!(first.state, JobState::Failed);
    assert_eq!(first.refunded, Some(first.amount));
    assert_eq!(first.settlement, None, "the killed host was not paid");

    // The client paid exactly for the completed job.
    let after = balance(&sdk, client, "USDC").await;
    let spent = result.paid.checked_add(result.fee).unwrap();
    assert_eq!(before.checked_sub(after).unwrap(), spent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_jobs_through_one_sdk() {
    let devnet = crate::common::devnet(3).await;
    let sdk = devnet.client_sdk().await.unwrap();
    let model = model_of(&devnet);
    let mut handles = Vec::new();
    for i in 0..20u64 {
        let mut request = JobRequest::new(&model, "").max_tokens(16);
        request.seed = i + 1;
        request.temperature_milli = 800;
        handles.push(sdk.submit_job(request).await.unwrap());
    }
    let mut jobs = std::collections::BTreeSet::new();
    for handle in handles {
        let result = handle.result().await.unwrap();
        assert_eq!(result.cid, fabstir_storage::cid_of(result.text.as_bytes()));
        jobs.insert(result.job);
    }
    assert_eq!(jobs.len(), 20, "twenty distinct jobs completed");
    for job in jobs {
        assert_eq!(
            sdk.job_status(job).await.unwrap().state,
            JobState::PaymentReleased
        );
    }
}
