//! The network suite over [`P2pNetwork`]: a real libp2p client node on 127.0.0.1 and a host
//! node serving a scripted [`TestHost`], found through the DHT and verified against the
//! registry like any host.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::primitives::Address;
use fabstir_core::{InMemoryRegistry, JobId, ModelId, NodeCapabilities, SessionId};
use fabstir_p2p::testing::{Script, TEST_CHAIN_ID, TestHost};
use fabstir_p2p::{HostService, Keypair, Network, P2pConfig};
use fabstir_sdk::{NetworkLayer, P2pNetwork};

use super::network::{NetworkFixture, run_all};

struct Libp2p {
    client: P2pNetwork,
    service: Arc<TestHost>,
    capabilities: NodeCapabilities,
    client_key: SigningKey,
    sessions: AtomicU64,
    _host: Network,
}

#[async_trait]
impl NetworkFixture for Libp2p {
    fn network(&self) -> &dyn NetworkLayer {
        &self.client
    }
    fn host(&self) -> &NodeCapabilities {
        &self.capabilities
    }
    fn token(&self) -> Address {
        Address::zero()
    }
    fn client(&self) -> &SigningKey {
        &self.client_key
    }
    async fn servable_job(&self) -> JobId {
        let job = JobId(42);
        self.service.allow(job, address_of(&self.client_key));
        job
    }
    async fn servable_session(&self, covered: u64) -> SessionId {
        let session = JobId(1_000 + self.sessions.fetch_add(1, Ordering::SeqCst));
        self.service
            .open_session(session, address_of(&self.client_key), covered);
        session
    }
}

fn config() -> P2pConfig {
    let mut config = P2pConfig::loopback();
    config.chain_id = TEST_CHAIN_ID;
    config.request_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(5);
    config.query_timeout = Duration::from_secs(10);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_libp2p_network_conforms() {
    let registry = Arc::new(InMemoryRegistry::new());
    let model = ModelId::from_name("conformance");
    let keypair = Keypair::generate_ed25519();
    let service = Arc::new(
        TestHost::builder(
            SigningKey::from_bytes(&[9u8; 32].into()).unwrap(),
            keypair.public().to_peer_id(),
        )
        .chain_id(TEST_CHAIN_ID)
        .models(vec![model])
        .price(100)
        .script(Script::Tokens(5))
        .build(),
    );
    registry.insert(service.registry_entry().unwrap());
    let host = Network::spawn(config(), keypair, registry.clone(), Some(service.clone()))
        .await
        .unwrap();
    let capabilities = service.capabilities().await.capabilities;
    let mut client_config = config();
    client_config.listen_addrs = Vec::new();
    client_config.bootstrap_peers = host.listen_addrs().await.unwrap();
    let client = Network::spawn(client_config, Keypair::generate_ed25519(), registry, None)
        .await
        .unwrap();
    host.advertise(&model).await.unwrap();
    client.bootstrap().await.unwrap();
    run_all(&Libp2p {
        client: P2pNetwork::new(client),
        service,
        capabilities,
        client_key: SigningKey::from_bytes(&[1u8; 32].into()).unwrap(),
        sessions: AtomicU64::new(0),
        _host: host,
    })
    .await;
}
