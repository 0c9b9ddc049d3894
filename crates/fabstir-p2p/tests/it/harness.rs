//! Test nodes: scripted hosts (`fabstir_p2p::testing::TestHost`), node spawning and raw frame
//! helpers.

use std::sync::Arc;
use std::time::Duration;

use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::cid::cid_of;
use fabstir_core::wire::{
    self, AuthChallenge, AuthResponse, ClientFrame, FrameDecoder, PromptFrame, WireMessage,
};
use fabstir_core::{JobId, ModelId};
use fabstir_p2p::testing::{Fault, TEST_CHAIN_ID};
pub(crate) use fabstir_p2p::testing::{TestHost, padded_token, token};
use fabstir_p2p::{InMemoryRegistry, Keypair, Multiaddr, Network, P2pConfig};
use futures::{AsyncReadExt, AsyncWriteExt};

pub(crate) const CHAIN: u64 = TEST_CHAIN_ID;

/// A deterministic secp256k1 key.
pub(crate) fn eth_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

/// [`eth_key`] as the signer a client stream keeps (for its receipts).
pub(crate) fn client_key(seed: u8) -> Arc<SigningKey> {
    Arc::new(eth_key(seed))
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

/// Spawns a scripted host (streaming what its prompts say, serving the result `cid-hello`),
/// committing `fault` if given; `register` puts its correct entry in the registry.
pub(crate) async fn host_node(
    config: P2pConfig,
    registry: &Arc<InMemoryRegistry>,
    eth_seed: u8,
    models: Vec<ModelId>,
    price: u64,
    fault: Option<Fault>,
    register: bool,
) -> (Network, Arc<TestHost>) {
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let mut host = TestHost::builder(eth_key(eth_seed), peer)
        .chain_id(CHAIN)
        .models(models)
        .price(price)
        .result(JobId(1), cid_of(b"hello"), b"hello")
        // Bytes that are not what the CID names: a lying host.
        .result(JobId(1), cid_of(b"hullo"), b"hello");
    if let Some(fault) = fault {
        host = host.fault(fault);
    }
    let host = Arc::new(host.build());
    if register {
        registry.insert(host.registry_entry().unwrap());
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

/// The client's answer to `challenge` for `job`, signed with `key` (for clients that speak
/// the protocol by hand).
pub(crate) fn auth_answer(challenge: &AuthChallenge, job: JobId, key: &SigningKey) -> ClientFrame {
    let message = fabstir_core::auth::client_auth_message(
        CHAIN,
        Default::default(),
        job,
        challenge.host,
        &challenge.nonce,
    );
    ClientFrame::Auth(AuthResponse {
        job,
        nonce: challenge.nonce,
        signature: fabstir_core::auth::sign_message(key, &message)
            .unwrap()
            .to_vec(),
    })
}

pub(crate) fn prompt(text: &str) -> PromptFrame {
    PromptFrame {
        prompt: text.into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    }
}
