//! Test nodes: a scripted host service, node spawning and raw frame helpers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::node::{NodeCapabilities, TokenPrice};
use fabstir_core::primitives::Address;
use fabstir_core::wire::{
    self, CapabilitiesResponse, FrameDecoder, JobRequest, JobResponse, PromptFrame, Quote,
    RejectReason, StreamDone, StreamError, StreamErrorCode, StreamToken, WireMessage,
};
use fabstir_core::{JobId, ModelId, NodeInfo, TokenAmount};
use fabstir_p2p::{
    HostService, InMemoryRegistry, Keypair, Multiaddr, Network, P2pConfig, PeerId, TokenSink,
    node_peer_id, sign_capabilities,
};
use futures::{AsyncReadExt, AsyncWriteExt};

pub(crate) const CHAIN: u64 = 31_337;

/// A deterministic secp256k1 key.
pub(crate) fn eth_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

/// How a test host misbehaves, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forgery {
    None,
    /// Capabilities signed by another key than the one they name.
    BadSignature,
}

/// A host whose jobs are scripted by the prompt: `count:N` streams N tokens, `forever`
/// streams until cancelled.
pub(crate) struct TestHost {
    pub(crate) key: SigningKey,
    pub(crate) peer: PeerId,
    pub(crate) models: Vec<ModelId>,
    pub(crate) price: u64,
    pub(crate) forgery: Forgery,
    /// Job -> its client.
    pub(crate) jobs: DashMap<JobId, Address>,
    /// Runs that stopped because the client cancelled or left.
    pub(crate) cancelled: AtomicU64,
    /// Tokens produced over all runs.
    pub(crate) produced: AtomicU64,
}

impl TestHost {
    pub(crate) fn new(key: SigningKey, peer: PeerId, models: Vec<ModelId>, price: u64) -> Self {
        Self {
            key,
            peer,
            models,
            price,
            forgery: Forgery::None,
            jobs: DashMap::new(),
            cancelled: AtomicU64::new(0),
            produced: AtomicU64::new(0),
        }
    }

    pub(crate) fn eth_address(&self) -> Address {
        auth::address_of(&self.key)
    }

    /// The registry entry that makes this host verifiable.
    pub(crate) fn registry_entry(&self) -> NodeInfo {
        NodeInfo {
            address: self.eth_address(),
            peer_id: node_peer_id(&self.peer).unwrap(),
            models: self.models.clone(),
            prices: vec![],
            metadata: String::new(),
            stake: TokenAmount::default(),
            active: true,
        }
    }
}

pub(crate) fn token(i: u64) -> StreamToken {
    StreamToken {
        id: u32::try_from(i % u64::from(u32::MAX)).unwrap(),
        text: format!("t{i} "),
    }
}

/// Token `i` padded to 1,000 bytes of text.
pub(crate) fn padded_token(i: u64) -> StreamToken {
    let mut t = token(i);
    t.text = format!("{:<1000}", t.text);
    t
}

#[async_trait]
impl HostService for TestHost {
    fn address(&self) -> Address {
        self.eth_address()
    }

    async fn capabilities(&self) -> CapabilitiesResponse {
        let caps = NodeCapabilities {
            peer_id: node_peer_id(&self.peer).unwrap(),
            eth_address: Address::zero(),
            models: self.models.clone(),
            prices: vec![TokenPrice {
                token: Address::zero(),
                price_per_token: TokenAmount::from_base_units(self.price),
            }],
            max_tokens: 100_000,
            current_load: 0,
            max_concurrent: 4,
            queue_depth: 0,
            version: "test-host/0".into(),
        };
        let mut response = sign_capabilities(&self.key, CHAIN, caps).unwrap();
        if self.forgery == Forgery::BadSignature {
            let other = sign_capabilities(&eth_key(0xee), CHAIN, response.capabilities.clone());
            response.identity_signature = other.unwrap().identity_signature;
        }
        response
    }

    async fn job(&self, _peer: PeerId, request: JobRequest) -> JobResponse {
        match request {
            JobRequest::Quote(q) if self.models.contains(&q.model) => JobResponse::Quote(Quote {
                host: self.eth_address(),
                model: q.model,
                price_per_token: TokenAmount::from_base_units(self.price),
                token: q.token,
                max_tokens: q.max_tokens.min(1000),
                valid_until: 4_000_000_000,
            }),
            JobRequest::Quote(_) => JobResponse::Rejected {
                reason: RejectReason::UnknownModel,
                message: "not served here".into(),
            },
            JobRequest::Posted { job } => JobResponse::Accepted { job },
        }
    }

    async fn authorize(&self, job: JobId, client: Address) -> Result<(), StreamError> {
        match self.jobs.get(&job) {
            Some(owner) if *owner == client => Ok(()),
            Some(_) => Err(StreamError {
                code: StreamErrorCode::AuthFailed,
                message: format!("{client:#x} is not the client of job {job}"),
            }),
            None => Err(StreamError {
                code: StreamErrorCode::UnknownJob,
                message: format!("no job {job}"),
            }),
        }
    }

    async fn run(
        &self,
        job: JobId,
        _client: Address,
        prompt: PromptFrame,
        sink: TokenSink,
    ) -> Result<StreamDone, StreamError> {
        // `count:N` or `count:N:pad` (tokens of 1,000 bytes) or `forever`.
        let mut parts = prompt.prompt.split(':');
        let limit = match (parts.next(), parts.next()) {
            (Some("count"), Some(n)) => n.parse::<u64>().unwrap(),
            _ => u64::MAX,
        };
        let pad = parts.next() == Some("pad");
        let mut i = 0;
        while i < limit {
            let next = if pad { padded_token(i) } else { token(i) };
            if sink.send(next).await.is_err() {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
                return Err(StreamError {
                    code: StreamErrorCode::Cancelled,
                    message: "client left".into(),
                });
            }
            self.produced.fetch_add(1, Ordering::SeqCst);
            i += 1;
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let cid = format!("cid-of-job-{job}");
        let signature = auth::sign_message(&self.key, &auth::result_message(CHAIN, job, &cid, i))
            .unwrap()
            .to_vec();
        Ok(StreamDone {
            result_cid: cid,
            tokens_used: i,
            signature,
        })
    }

    async fn result(&self, cid: &str) -> Option<Vec<u8>> {
        (cid == "cid-hello").then(|| b"hello".to_vec())
    }
}

/// A loopback node configuration for tests.
pub(crate) fn config() -> P2pConfig {
    let mut config = P2pConfig::loopback();
    config.request_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(5);
    config.query_timeout = Duration::from_secs(10);
    config
}

pub(crate) async fn plain_node(config: P2pConfig, registry: &Arc<InMemoryRegistry>) -> Network {
    Network::spawn(config, Keypair::generate_ed25519(), registry.clone(), None)
        .await
        .unwrap()
}

/// Spawns a host; `register` puts its correct entry in the registry.
pub(crate) async fn host_node(
    config: P2pConfig,
    registry: &Arc<InMemoryRegistry>,
    eth_seed: u8,
    models: Vec<ModelId>,
    price: u64,
    forgery: Forgery,
    register: bool,
) -> (Network, Arc<TestHost>) {
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let mut host = TestHost::new(eth_key(eth_seed), peer, models, price);
    host.forgery = forgery;
    let host = Arc::new(host);
    if register {
        registry.insert(host.registry_entry());
    }
    let network = Network::spawn(config, keypair, registry.clone(), Some(host.clone()))
        .await
        .unwrap();
    (network, host)
}

pub(crate) async fn first_addr(node: &Network) -> Multiaddr {
    node.listen_addrs().await.unwrap().remove(0)
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads frames of `T` from a raw stream.
pub(crate) struct RawReader<T> {
    decoder: FrameDecoder<T>,
}

impl<T: WireMessage> RawReader<T> {
    pub(crate) fn new() -> Self {
        Self {
            decoder: FrameDecoder::new(),
        }
    }

    /// The next message, `Ok(None)` at end of stream, `Err` on a bad frame or a reset.
    pub(crate) async fn next(&mut self, stream: &mut libp2p::Stream) -> Result<Option<T>, String> {
        loop {
            if let Some(m) = self.decoder.next_message().map_err(|e| e.to_string())? {
                return Ok(Some(m));
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.extend(&buf[..n]);
        }
    }
}

pub(crate) async fn send_frame<T: WireMessage>(stream: &mut libp2p::Stream, message: &T) {
    stream
        .write_all(&wire::encode_frame(message).unwrap())
        .await
        .unwrap();
    stream.flush().await.unwrap();
}

pub(crate) fn prompt(text: &str) -> PromptFrame {
    PromptFrame {
        prompt: text.into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    }
}
