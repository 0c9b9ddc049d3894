//! Benchmarks of fabstir-p2p: token stream throughput on loopback (one token per frame, and
//! with coalescing) and ranking 10,000 candidates.
//!
//! Run with `cargo bench -p fabstir-p2p --bench stream`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::node::{NodeCapabilities, NodeHistory, TokenPrice};
use fabstir_core::primitives::Address;
use fabstir_core::wire::{
    CapabilitiesResponse, JobRequest, JobResponse, PromptFrame, RejectReason, StreamDone,
    StreamError, StreamToken,
};
use fabstir_core::{
    DiscoveredNode, JobId, ModelId, NodeInfo, NodePeerId, ProviderQuery, SelectionCriteria,
    TokenAmount,
};
use fabstir_p2p::{
    HostService, InMemoryRegistry, Keypair, Network, P2pConfig, PeerId, StreamEvent, TokenSink,
    node_peer_id, rank, sign_capabilities,
};
use futures::StreamExt;

const TOKENS: u64 = 10_000;

fn model() -> ModelId {
    ModelId::from_name("bench-model")
}

fn registry_entry(host: &BenchHost) -> NodeInfo {
    NodeInfo {
        address: host.address(),
        peer_id: node_peer_id(&host.peer).unwrap(),
        models: vec![model()],
        prices: vec![],
        metadata: String::new(),
        stake: TokenAmount::default(),
        active: true,
    }
}

struct BenchHost {
    key: SigningKey,
    peer: PeerId,
}

#[async_trait]
impl HostService for BenchHost {
    fn address(&self) -> Address {
        auth::address_of(&self.key)
    }

    async fn capabilities(&self) -> CapabilitiesResponse {
        let caps = NodeCapabilities {
            peer_id: node_peer_id(&self.peer).unwrap(),
            eth_address: Address::zero(),
            models: vec![model()],
            prices: vec![TokenPrice {
                token: Address::zero(),
                price_per_token: TokenAmount::from_base_units(10u64),
            }],
            max_tokens: 1000,
            current_load: 0,
            max_concurrent: 4,
            queue_depth: 0,
            version: String::new(),
        };
        sign_capabilities(&self.key, 31_337, caps).unwrap()
    }

    async fn job(&self, _: PeerId, _: JobRequest) -> JobResponse {
        JobResponse::Rejected {
            reason: RejectReason::Busy,
            message: String::new(),
        }
    }

    async fn authorize(&self, _: JobId, _: Address) -> Result<(), StreamError> {
        Ok(())
    }

    async fn run(
        &self,
        job: JobId,
        _: Address,
        _: PromptFrame,
        sink: TokenSink,
    ) -> Result<StreamDone, StreamError> {
        for i in 0..TOKENS {
            let token = StreamToken {
                id: u32::try_from(i).unwrap(),
                text: " word".into(),
            };
            if sink.send(token).await.is_err() {
                break;
            }
        }
        let cid = "bench".to_owned();
        let message = auth::result_message(31_337, job, &cid, TOKENS);
        Ok(StreamDone {
            result_cid: cid,
            tokens_used: TOKENS,
            signature: auth::sign_message(&self.key, &message).unwrap().to_vec(),
        })
    }
}

async fn pair(max_batch_tokens: usize) -> (Network, Network) {
    let registry = Arc::new(InMemoryRegistry::new());
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let host = Arc::new(BenchHost {
        key: SigningKey::from_bytes(&[1u8; 32].into()).unwrap(),
        peer,
    });
    registry.insert(registry_entry(&host));
    let mut config = P2pConfig::loopback();
    config.stream.max_batch_tokens = max_batch_tokens;
    let host_net = Network::spawn(config, keypair, registry.clone(), Some(host))
        .await
        .unwrap();
    let client = Network::spawn(
        P2pConfig::loopback(),
        Keypair::generate_ed25519(),
        registry,
        None,
    )
    .await
    .unwrap();
    let addr = host_net.listen_addrs().await.unwrap().remove(0);
    client.dial(addr).await.unwrap();
    (host_net, client)
}

async fn stream_once(client: &Network, host: PeerId, key: &SigningKey) -> usize {
    let prompt = PromptFrame {
        prompt: "bench".into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
    };
    let mut stream = client
        .open_stream(host, JobId(1), key, prompt)
        .await
        .unwrap();
    let mut frames = 0;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Tokens(_) => frames += 1,
            StreamEvent::Done(_) => break,
        }
    }
    frames
}

fn stream_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_bytes(&[2u8; 32].into()).unwrap();
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(TOKENS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (name, batch) in [("one_token_per_frame", 1), ("coalescing", 256)] {
        let (host, client) = rt.block_on(pair(batch));
        let frames = rt.block_on(stream_once(&client, host.peer_id(), &key));
        eprintln!("stream/{name}: {frames} frames for {TOKENS} tokens");
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(stream_once(&client, host.peer_id(), &key).await) })
        });
        rt.block_on(async {
            client.shutdown().await.unwrap();
            host.shutdown().await.unwrap();
        });
    }
    group.finish();
}

fn candidates(n: u32) -> Vec<DiscoveredNode> {
    (0..n)
        .map(|i| {
            let mut peer = vec![0x00, 36, 8, 1, 18, 32];
            peer.extend_from_slice(&[0; 28]);
            peer.extend_from_slice(&i.to_be_bytes());
            DiscoveredNode {
                capabilities: NodeCapabilities {
                    peer_id: NodePeerId::from_bytes(peer).unwrap(),
                    eth_address: Address::zero(),
                    models: vec![ModelId::from_name("m")],
                    prices: vec![TokenPrice {
                        token: Address::zero(),
                        price_per_token: TokenAmount::from_base_units(u64::from(i % 97 + 1)),
                    }],
                    max_tokens: 1000,
                    current_load: i % 5,
                    max_concurrent: 4,
                    queue_depth: i % 3,
                    version: String::new(),
                },
                addresses: vec![],
                latency: Duration::from_micros(u64::from(i % 1013) * 37),
                history: NodeHistory {
                    successes: i % 11,
                    failures: i % 7,
                },
            }
        })
        .collect()
}

fn ranking(c: &mut Criterion) {
    let nodes = candidates(10_000);
    let criteria =
        SelectionCriteria::new(ProviderQuery::new(ModelId::from_name("m"), Address::zero()));
    let mut group = c.benchmark_group("ranking");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("rank_10000", |b| {
        b.iter(|| black_box(rank(nodes.clone(), &criteria).unwrap()))
    });
    group.finish();
}

/// A 50-node network (1 bootstrap node, 5 hosts of the model, 44 plain peers); one of the
/// peers discovers the model's providers without its cache: DHT query, dials, verified
/// capabilities. Prints p50/p95 over 40 runs, then lets criterion time it.
fn discovery(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = Arc::new(InMemoryRegistry::new());
    let nodes: Vec<Network> = rt.block_on(async {
        let boot = Network::spawn(
            P2pConfig::loopback(),
            Keypair::generate_ed25519(),
            registry.clone(),
            None,
        )
        .await
        .unwrap();
        let mut config = P2pConfig::loopback();
        config.bootstrap_peers = vec![boot.listen_addrs().await.unwrap().remove(0)];
        let mut nodes = vec![boot];
        for i in 0..49u8 {
            let keypair = Keypair::generate_ed25519();
            let host = (i < 5).then(|| {
                let host = Arc::new(BenchHost {
                    key: SigningKey::from_bytes(&[i + 10; 32].into()).unwrap(),
                    peer: keypair.public().to_peer_id(),
                });
                registry.insert(registry_entry(&host));
                host as Arc<dyn HostService>
            });
            let node = Network::spawn(config.clone(), keypair, registry.clone(), host)
                .await
                .unwrap();
            node.bootstrap().await.unwrap();
            if i < 5 {
                node.advertise(&model()).await.unwrap();
            }
            nodes.push(node);
        }
        nodes
    });
    let client = nodes.last().unwrap().clone();
    let mut times: Vec<Duration> = rt.block_on(async {
        let mut times = Vec::new();
        for _ in 0..40 {
            client.clear_discovery_cache();
            let start = std::time::Instant::now();
            let found = client.refresh_providers(&model()).await.unwrap();
            times.push(start.elapsed());
            assert_eq!(found.len(), 5);
        }
        times
    });
    times.sort();
    eprintln!(
        "discovery/50_nodes: p50 {:?}, p95 {:?} (5 providers, uncached)",
        times[times.len() / 2],
        times[times.len() * 95 / 100]
    );
    c.bench_function("discovery_50_nodes_uncached", |b| {
        b.to_async(&rt).iter(|| async {
            client.clear_discovery_cache();
            black_box(client.refresh_providers(&model()).await.unwrap())
        })
    });
    let cached = ProviderQuery::new(model(), Address::zero());
    c.bench_function("discovery_50_nodes_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(client.find_providers(&cached).await.unwrap()) })
    });
    rt.block_on(async {
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
    });
}

criterion_group!(benches, stream_throughput, ranking, discovery);
criterion_main!(benches);
