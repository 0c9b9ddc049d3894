//! Fault injection with real hosts on the devnet: a host that crashes after quoting (before it
//! claims), a host whose stream turns to garbage mid-job, and a host that submits a result CID
//! that does not match what it streamed. Each ends with the client's funds either spent on a
//! job the chain records as completed or returned, and the SDK reporting a clear error or
//! completing on another host.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use ethers::types::Address;
use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_core::{JobId, JobState, ProviderQuery, TokenAmount};
use fabstir_node::{Host, HostHandle, NodeHooks};
use fabstir_p2p::HostService;
use fabstir_p2p::fault::StreamFault;
use fabstir_p2p::testing::{Fault, TestHost};
use fabstir_sdk::SdkEvent;
use fabstir_sdk::{Error, FabstirSdk, JobRequest, JobResult};
use fabstir_storage::{Cid, ResultStore};
use tokio::sync::mpsc;

use crate::common::{balance, chain_balance, client, credit, model_of};

fn index_of(devnet: &Devnet, host: Address) -> usize {
    devnet
        .nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(|n| n.host.address() == host))
        .expect("a running host with that address")
}

/// Waits for the first event `pick` accepts.
async fn next_event<T>(
    events: &mut tokio::sync::broadcast::Receiver<SdkEvent>,
    mut pick: impl FnMut(&SdkEvent) -> Option<T>,
) -> T {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(event)) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            other => panic!("the awaited event did not come: {other:?}"),
        }
    }
}

/// The job's escrow after everything settled: what the client spent on it (paid to the host
/// plus the fee), after checking that the rest came back.
async fn spent_on(sdk: &FabstirSdk, job: JobId) -> TokenAmount {
    let status = sdk.job_status(job).await.unwrap();
    match (
        status.state,
        status.settlement.map(|s| (s.paid, s.fee, s.refund)),
        status.refunded,
    ) {
        (JobState::PaymentReleased, Some((paid, fee, refund)), None) => {
            let total = paid.checked_add(fee).unwrap().checked_add(refund).unwrap();
            assert_eq!(
                total, status.amount,
                "job {job}: the escrow was split exactly"
            );
            paid.checked_add(fee).unwrap()
        }
        (JobState::Failed, None, Some(refunded)) => {
            assert_eq!(
                refunded, status.amount,
                "job {job}: the whole escrow came back"
            );
            TokenAmount::ZERO
        }
        other => panic!("job {job} still holds funds or ended oddly: {other:?}"),
    }
}

/// The client's USDC spend equals what its completed job and its failed jobs cost.
async fn assert_accounted(sdk: &FabstirSdk, before: TokenAmount, result: &JobResult) {
    let mut spent = result.paid.checked_add(result.fee).unwrap();
    for job in &result.failed_jobs {
        spent = spent.checked_add(spent_on(sdk, *job).await).unwrap();
    }
    let after = balance(sdk, client_of(sdk), "USDC").await;
    assert_eq!(
        before.checked_sub(after).unwrap(),
        spent,
        "the client paid exactly for what the chain settled"
    );
}

/// The devnet's hosts as the SDK sees them now (with its history of each).
async fn discover(sdk: &FabstirSdk, devnet: &Devnet) -> Vec<fabstir_core::DiscoveredNode> {
    sdk.discover(&ProviderQuery {
        model: fabstir_core::ModelId::from_name(&model_of(devnet)),
        token: sdk.token("USDC").unwrap().address(),
        max_price: None,
        max_latency: None,
    })
    .await
    .unwrap()
}

fn client_of(sdk: &FabstirSdk) -> Address {
    sdk.signer_address().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_before_claiming_is_cancelled_and_replaced() {
    let armed = Arc::new(AtomicBool::new(true));
    let (crashed_tx, mut crashed) = mpsc::unbounded_channel();
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 2;
    config.claim_timeout = Duration::from_secs(3);
    // The first host to answer a quote crashes at once: it never claims the job it quoted
    // for, and tells the test which host it was, so that the test can take its network down
    // too.
    config.hooks = NodeHooks {
        service: Some(Arc::new(move |host: Arc<Host>| {
            let crashed = crashed_tx.clone();
            let dying = host.clone();
            let crash = Arc::new(move || {
                // From here on the host claims nothing, as if its process had died.
                dying.stop();
                let _ = crashed.send(dying.address());
            });
            Arc::new(
                TestHost::wrapping(Arc::new(HostHandle(host)))
                    .fault(Fault::CrashAfterQuote {
                        armed: armed.clone(),
                        crash,
                    })
                    .build(),
            ) as Arc<dyn HostService>
        })),
        ..NodeHooks::default()
    };
    let mut devnet = Devnet::start(config).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let before = balance(&sdk, client(&devnet), "USDC").await;
    let mut events = sdk.events();

    let handle = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(20))
        .await
        .unwrap();
    let dead = tokio::time::timeout(Duration::from_secs(30), crashed.recv())
        .await
        .unwrap()
        .unwrap();
    // Its quote reached the client, which posts the job; then the host's process goes away.
    next_event(&mut events, |e| match e {
        SdkEvent::JobStateChanged {
            to: JobState::Posted,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    let index = index_of(&devnet, dead);
    devnet.stop_node(index).await.unwrap();

    let (failed_job, reason) = next_event(&mut events, |e| match e {
        SdkEvent::Failover {
            failed_job, reason, ..
        } => Some((*failed_job, reason.clone())),
        _ => None,
    })
    .await;
    assert!(
        reason.contains("claim"),
        "the failover names the missing claim: {reason}"
    );
    let result = handle.result().await.unwrap();
    assert_eq!(result.attempts, 2, "the job completed on the other host");
    assert_ne!(result.host_address, dead);
    assert_eq!(result.failed_jobs.len(), 1);
    assert_eq!(Some(result.failed_jobs[0]), failed_job);
    assert_eq!(result.cid, fabstir_storage::cid_of(result.text.as_bytes()));

    // The unclaimed job was cancelled: its whole escrow came back without waiting for the
    // deadline.
    tokio::time::timeout(Duration::from_secs(30), sdk.wait_recoveries())
        .await
        .expect("the escrow is recovered");
    let first = sdk.job_status(result.failed_jobs[0]).await.unwrap();
    assert_eq!(first.state, JobState::Failed);
    assert_eq!(first.settlement, None, "nobody was paid");
    assert_eq!(first.refunded, Some(first.amount));
    assert_accounted(&sdk, before, &result).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_streaming_garbage_frames_is_dropped_and_the_job_completes_elsewhere() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 2;
    config.token_delay = Some(Duration::from_millis(30));
    config.job_deadline = Duration::from_secs(40);
    let devnet = Devnet::start(config).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let before = balance(&sdk, client(&devnet), "USDC").await;
    let mut events = sdk.events();

    let handle = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(40))
        .await
        .unwrap();
    // The host that streams the first token turns the rest of its stream into garbage.
    let first_job = next_event(&mut events, |e| match e {
        SdkEvent::TokenReceived { job, .. } => Some(*job),
        _ => None,
    })
    .await;
    let serving = sdk.job_status(first_job).await.unwrap().host.unwrap();
    let faulty = devnet.nodes[index_of(&devnet, serving)].as_ref().unwrap();
    faulty
        .network
        .inject_stream_fault(Some(StreamFault::GarbageFrame));

    let reason = next_event(&mut events, |e| match e {
        SdkEvent::Failover { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(
        reason.contains(&format!("stream of job {first_job}")),
        "the failover names the broken stream: {reason}"
    );
    let result = handle.result().await.unwrap();
    assert_eq!(result.attempts, 2, "the job completed on the other host");
    assert_ne!(result.host_address, serving);
    assert_eq!(result.failed_jobs, vec![first_job]);
    assert_eq!(result.cid, fabstir_storage::cid_of(result.text.as_bytes()));

    // The faulty host still settles the tokens it produced (it believes the client left), or
    // the escrow expires back to the client: either way nothing stays locked.
    tokio::time::timeout(Duration::from_secs(60), sdk.wait_recoveries())
        .await
        .expect("the first job ends");
    assert_accounted(&sdk, before, &result).await;
    // The SDK remembers which host failed it and which one served.
    let nodes = discover(&sdk, &devnet).await;
    let history = |address: Address| {
        nodes
            .iter()
            .find(|n| n.capabilities.eth_address == address)
            .map(|n| n.history)
            .unwrap()
    };
    assert_eq!(history(serving).failures, 1);
    assert_eq!(history(result.host_address).successes, 1);
}

/// A store that keeps something other than what it was given: the host streams the model's
/// text but signs and submits the CID of altered bytes.
struct TamperingStore(Arc<dyn ResultStore>);

#[async_trait]
impl ResultStore for TamperingStore {
    async fn put(&self, bytes: bytes::Bytes) -> fabstir_storage::Result<Cid> {
        let mut altered = bytes.to_vec();
        altered.extend_from_slice(b"\n[altered]");
        self.0.put(altered.into()).await
    }

    async fn get(&self, cid: &Cid) -> fabstir_storage::Result<Vec<u8>> {
        self.0.get(cid).await
    }

    async fn has(&self, cid: &Cid) -> fabstir_storage::Result<bool> {
        self.0.has(cid).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_cid_that_does_not_match_the_stream_is_reported() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 1;
    config.hooks = NodeHooks {
        store: Some(Arc::new(|inner| {
            Arc::new(TamperingStore(inner)) as Arc<dyn ResultStore>
        })),
        ..NodeHooks::default()
    };
    let devnet = Devnet::start(config).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let before = balance(&sdk, client(&devnet), "USDC").await;
    let mut events = sdk.events();

    let err = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(20))
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    let Error::ResultMismatch {
        job,
        streamed,
        reported,
    } = err
    else {
        panic!("not a result mismatch: {err}");
    };
    let reported = reported.map(|cid| *cid);
    assert_ne!(Some(*streamed), reported);
    let message = next_event(&mut events, |e| match e {
        SdkEvent::Error {
            job: Some(j),
            message,
        } if *j == job => Some(message.clone()),
        _ => None,
    })
    .await;
    assert!(message.contains("CID mismatch"), "{message}");

    // The host put its wrong CID on chain and was paid for it (disputes are a later
    // feature); the client lost nothing beyond that settlement.
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = sdk.job_status(job).await.unwrap();
            if status.state == JobState::PaymentReleased {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the host submits its result");
    assert_eq!(status.result_cid, reported);
    let spent = spent_on(&sdk, job).await;
    let after = balance(&sdk, client(&devnet), "USDC").await;
    assert_eq!(before.checked_sub(after).unwrap(), spent);
    // The SDK remembers the host as faulty.
    let nodes = discover(&sdk, &devnet).await;
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].history.failures, 1);
    assert_eq!(nodes[0].history.successes, 0);
}

/// A host that claims the job and never streams a token: the client received nothing, so it
/// signed nothing; the host is paid nothing, and the client asks to close and is refunded in
/// full after the close window, long before the job's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_streams_is_paid_nothing_and_the_client_is_refunded() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 1;
    config.stream_stall = Duration::from_secs(2);
    config.job_deadline = Duration::from_secs(120);
    let devnet = Devnet::start(config).await.unwrap();
    let node = devnet.nodes[0].as_ref().unwrap();
    node.network.inject_stream_fault(Some(StreamFault::Silent));
    let host = node.host.address();
    let sdk = devnet.client_sdk().await.unwrap();
    let before = chain_balance(&devnet, client(&devnet), "USDC").await;
    let earned_before = credit(&devnet, host, "USDC").await;
    let mut events = sdk.events();

    let handle = sdk
        .submit_job(JobRequest::new(model_of(&devnet), "").max_tokens(20))
        .await
        .unwrap();
    let job = next_event(&mut events, |e| match e {
        SdkEvent::JobStateChanged { job, .. } => *job,
        _ => None,
    })
    .await;
    let err = handle.result().await.unwrap_err();
    assert!(
        matches!(err, Error::AllAttemptsFailed { attempts: 1, .. }),
        "{err}"
    );
    tokio::time::timeout(Duration::from_secs(60), sdk.wait_recoveries())
        .await
        .expect("the escrow is recovered");

    let status = sdk.job_status(job).await.unwrap();
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    assert_eq!(status.refunded, Some(status.amount), "refunded in full");
    assert!(status.settlement.is_none(), "nothing was settled");
    assert_eq!(
        chain_balance(&devnet, client(&devnet), "USDC").await,
        before,
        "the client has every base unit back"
    );
    assert_eq!(
        credit(&devnet, host, "USDC").await,
        earned_before,
        "the host earned nothing"
    );
    // Refunded through the close window, not by waiting for the deadline.
    let job = crate::common::manager(&devnet)
        .await
        .job(job)
        .await
        .unwrap();
    let now = crate::common::manager(&devnet)
        .await
        .latest_block_time()
        .await
        .unwrap();
    assert!(now < job.details.deadline, "refunded before the deadline");
}
