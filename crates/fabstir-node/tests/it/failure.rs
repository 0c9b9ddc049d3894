//! A failed inference releases the job at once: the client is refunded without waiting for
//! the deadline; the client learns that inference failed, never the backend's error (which
//! names the backend's URL, with its key).

use std::sync::Arc;

use async_trait::async_trait;
use fabstir_contracts::JobStatus;
use fabstir_core::wire::StreamErrorCode;
use fabstir_inference::{GenerateRequest, InferenceBackend, ModelInfo, TokenStream};

use crate::common::{Env, dial, shut_down, stream_job};

/// What an inference server's URL may carry, and must never reach a peer.
const SECRET: &str = "SECRET-KEY-4242";

/// A backend whose every generation fails, as a server refusing its key does.
struct Broken(ModelInfo);

#[async_trait]
impl InferenceBackend for Broken {
    fn model(&self) -> &ModelInfo {
        &self.0
    }

    async fn generate(&self, _request: GenerateRequest) -> fabstir_inference::Result<TokenStream> {
        Err(fabstir_inference::Error::HttpStatus {
            url: format!("https://inference.example/v1/completions?api_key={SECRET}"),
            status: 401,
            body: format!("invalid key {SECRET}"),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_inference_releases_the_job_and_refunds_the_client() {
    let env = Env::new().await;
    let wrap: fabstir_node::BackendWrapper = Arc::new(|inner: Arc<dyn InferenceBackend>| {
        Arc::new(Broken(inner.model().clone())) as Arc<dyn InferenceBackend>
    });
    let hooks = fabstir_node::NodeHooks {
        backend: Some(wrap),
        ..fabstir_node::NodeHooks::default()
    };
    let host = fabstir_node::start_with(&env.host_config(0), env.host_key(0), hooks)
        .await
        .unwrap();
    let client = env.client_network().await;
    dial(&client, &host).await;
    let before = env.balance(env.usdc, env.client.address()).await;

    let job = env.claimed_usdc_job(0).await;

    match stream_job(&client, host.peer_id(), job, &env.client_key, "").await {
        Err(fabstir_p2p::Error::Remote {
            code: StreamErrorCode::InferenceFailed,
            message,
        }) => assert!(
            !message.contains(SECRET) && !message.contains("inference.example"),
            "the backend's error reached the client: {message}"
        ),
        other => panic!("expected InferenceFailed, got {:?}", other.map(|s| s.text)),
    }
    env.wait_status(job, JobStatus::Released).await;
    assert_eq!(
        env.balance(env.usdc, env.client.address()).await,
        before,
        "the whole escrow is back, before the deadline"
    );
    shut_down(client, [host]).await;
}
