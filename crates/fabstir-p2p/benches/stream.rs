//! Benchmarks of fabstir-p2p: token stream throughput on loopback (one token per frame, and
//! with coalescing), streams with receipts from a host producing at a steady rate on loopback
//! and through 50 ms of added latency each way (the `latency` section of
//! `bench/results.json`), ranking 10,000 candidates, and discovery in a 50-node network (whose
//! p50 and p95 go to `bench/results.json`).
//!
//! Run with `cargo bench -p fabstir-p2p --bench stream` (part of `cargo xtask bench`).

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../../bench/results.rs"]
mod results;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::node::{NodeCapabilities, NodeHistory, TokenPrice};
use fabstir_core::primitives::Address;
use fabstir_core::wire::PromptFrame;
use fabstir_core::{
    DiscoveredNode, JobId, ModelId, NodePeerId, ProviderQuery, SelectionCriteria, TokenAmount, rank,
};
use fabstir_p2p::testing::{DelayProxy, Pacing, Script, TestHost};
use fabstir_p2p::{
    HostService, InMemoryRegistry, Keypair, Network, P2pConfig, PeerId, StreamEvent,
};
use futures::StreamExt;

const TOKENS: u64 = 10_000;

fn model() -> ModelId {
    ModelId::from_name("bench-model")
}

/// The client's key; the benchmark's job 1 is its.
fn client_key() -> SigningKey {
    SigningKey::from_bytes(&[2u8; 32].into()).unwrap()
}

/// A host of the model streaming `TOKENS` tokens as fast as the client reads them.
fn bench_host(seed: u8, peer: PeerId) -> Arc<TestHost> {
    let key = SigningKey::from_bytes(&[seed; 32].into()).unwrap();
    Arc::new(
        TestHost::builder(key, peer)
            .models(vec![model()])
            .price(10)
            .script(Script::Tokens(TOKENS))
            .pacing(Pacing::Free)
            .job(JobId(1), auth::address_of(&client_key()))
            .build(),
    )
}

async fn pair(max_batch_tokens: usize) -> (Network, Network) {
    let registry = Arc::new(InMemoryRegistry::new());
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let host = bench_host(1, peer);
    registry.insert(host.registry_entry().unwrap());
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

fn bench_prompt() -> PromptFrame {
    PromptFrame {
        prompt: "bench".into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
    }
}

async fn stream_once(client: &Network, host: PeerId, key: &SigningKey) -> usize {
    let prompt = bench_prompt();
    let mut stream = client
        .open_stream(host, JobId(1), std::sync::Arc::new(key.clone()), prompt)
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
    let key = client_key();
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

/// The steady producer of the latency runs: about the embedded engine's rate on
/// stories260K in release builds.
const LATENCY_RATE: u32 = 4_000;
/// Tokens per latency run.
const LATENCY_TOKENS: u64 = 4_000;
/// Runs per link.
const LATENCY_RUNS: usize = 5;

/// Tokens per second a client receives from a host producing `LATENCY_RATE` tokens/s, with
/// receipts: tokens after the first over the time from the first to the last.
async fn paced_stream(client: &Network, host: PeerId, key: &SigningKey) -> f64 {
    let prompt = bench_prompt();
    let mut stream = client
        .open_stream(host, JobId(1), Arc::new(key.clone()), prompt)
        .await
        .unwrap();
    let (mut first, mut last, mut tokens) = (None, Instant::now(), 0u64);
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Tokens(batch) => {
                first.get_or_insert_with(Instant::now);
                last = Instant::now();
                tokens += batch.tokens.len() as u64;
            }
            StreamEvent::Done(_) => break,
        }
    }
    assert_eq!(tokens, LATENCY_TOKENS);
    let span = last.duration_since(first.unwrap()).as_secs_f64().max(1e-9);
    (tokens - 1) as f64 / span
}

/// Streams with receipts from a host producing a steady `LATENCY_RATE` tokens/s, on loopback
/// and through a [`DelayProxy`] adding `delay` each way: the share of the producer's rate the
/// client receives (the target: 98%). Written to the `latency` section.
fn latency(_: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = client_key();
    let section = rt.block_on(async {
        let registry = Arc::new(InMemoryRegistry::new());
        let keypair = Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let skey = SigningKey::from_bytes(&[3u8; 32].into()).unwrap();
        let host = Arc::new(
            TestHost::builder(skey, peer)
                .models(vec![model()])
                .price(10)
                .script(Script::Tokens(LATENCY_TOKENS))
                .pacing(Pacing::Rate(LATENCY_RATE))
                .job(JobId(1), auth::address_of(&key))
                .build(),
        );
        registry.insert(host.registry_entry().unwrap());
        let host_net = Network::spawn(P2pConfig::loopback(), keypair, registry.clone(), Some(host))
            .await
            .unwrap();
        let direct = host_net.listen_addrs().await.unwrap().remove(0);
        let port = direct
            .iter()
            .find_map(|p| match p {
                fabstir_p2p::libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap();
        let mut links = serde_json::Map::new();
        for (name, delay) in [
            ("loopback", None),
            ("latency_50ms_each_way", Some(Duration::from_millis(50))),
        ] {
            let proxy = match delay {
                Some(delay) => Some(
                    DelayProxy::start(([127, 0, 0, 1], port).into(), delay)
                        .await
                        .unwrap(),
                ),
                None => None,
            };
            let addr: fabstir_p2p::Multiaddr = match &proxy {
                Some(proxy) => format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer}", proxy.addr().port())
                    .parse()
                    .unwrap(),
                None => direct.clone(),
            };
            let client = Network::spawn(
                P2pConfig::loopback(),
                Keypair::generate_ed25519(),
                registry.clone(),
                None,
            )
            .await
            .unwrap();
            client.dial(addr).await.unwrap();
            let mut rates = Vec::new();
            for _ in 0..LATENCY_RUNS {
                rates.push(paced_stream(&client, peer, &key).await);
            }
            client.shutdown().await.unwrap();
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let share = 100.0 * median / f64::from(LATENCY_RATE);
            eprintln!("latency/{name}: {median:.0} tokens/s of {LATENCY_RATE} ({share:.1}%)");
            links.insert(
                name.into(),
                serde_json::json!({
                    "tokens_per_s_p50": median,
                    "share_of_producer_pct": share,
                    "runs": LATENCY_RUNS,
                }),
            );
        }
        host_net.shutdown().await.unwrap();
        serde_json::json!({
            "producer_tokens_per_s": LATENCY_RATE,
            "tokens_per_run": LATENCY_TOKENS,
            "credit_window_cap": fabstir_p2p::StreamConfig::default().credit_window,
            "receipt_interval": fabstir_core::receipt::receipt_interval(
                fabstir_p2p::StreamConfig::default().credit_window
            ),
            "links": links,
        })
    });
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results.json");
    results::write_section(&file, "latency", section).unwrap();
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

/// Runs of each discovery measurement whose p50 and p95 are reported.
const DISCOVERY_RUNS: usize = 40;

/// p50 and p95 of timed runs, in milliseconds.
fn p50_p95_ms(samples: Vec<Duration>) -> serde_json::Value {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    serde_json::json!({
        "p50": results::percentile(&mut ms, 0.5),
        "p95": results::percentile(&mut ms, 0.95),
    })
}

/// A 50-node network (1 bootstrap node, 5 hosts of the model, 44 plain peers) in which the
/// model's providers are found (DHT query, dials, verified capabilities): cold, by a new
/// client that joins through the bootstrap node; with the cache cleared, by a peer whose
/// connections are open; and from the cache. Their p50 and p95 over individually timed runs
/// go to the `discovery` section of `bench/results.json`; then criterion times the last two.
fn discovery(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let registry = Arc::new(InMemoryRegistry::new());
    let (nodes, client_config) = rt.block_on(async {
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
                let host = bench_host(i + 10, keypair.public().to_peer_id());
                registry.insert(host.registry_entry().unwrap());
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
        // A new client listens nowhere, as the SDK's does.
        config.listen_addrs = Vec::new();
        (nodes, config)
    });
    let client = nodes.last().unwrap().clone();
    let query = ProviderQuery::new(model(), Address::zero());
    let section = rt.block_on(async {
        let mut cold = Vec::new();
        // A cold lookup can end before it has met every provider; one is enough for a job.
        let mut cold_found = Vec::new();
        for _ in 0..DISCOVERY_RUNS {
            let newcomer = Network::spawn(
                client_config.clone(),
                Keypair::generate_ed25519(),
                registry.clone(),
                None,
            )
            .await
            .unwrap();
            let start = Instant::now();
            newcomer.bootstrap().await.unwrap();
            let found = newcomer.find_providers(&query).await.unwrap();
            cold.push(start.elapsed());
            assert!(!found.is_empty(), "a new client found no provider");
            cold_found.push(found.len());
            newcomer.shutdown().await.unwrap();
        }
        let mut cleared = Vec::new();
        // A lookup may end before every provider answered (the DHT's hardening is issue 16's);
        // how many it found is reported, not asserted.
        let mut cleared_found = Vec::new();
        for _ in 0..DISCOVERY_RUNS {
            client.clear_discovery_cache();
            let start = Instant::now();
            let found = client.refresh_providers(&model()).await.unwrap();
            cleared.push(start.elapsed());
            assert!(!found.is_empty(), "a refresh found no provider");
            cleared_found.push(found.len());
        }
        let cached = client.find_providers(&query).await.unwrap().len();
        let mut hits = Vec::new();
        for _ in 0..1_000 {
            let start = Instant::now();
            let found = client.find_providers(&query).await.unwrap();
            hits.push(start.elapsed());
            assert_eq!(found.len(), cached, "the cache answers the same");
        }
        serde_json::json!({
            "nodes": nodes.len(),
            "providers": 5,
            "cold_new_client_ms": p50_p95_ms(cold),
            "cold_runs": DISCOVERY_RUNS,
            "cold_runs_finding_all_5": cold_found.iter().filter(|&&n| n == 5).count(),
            "cold_fewest_found": cold_found.iter().min(),
            "cache_cleared_ms": p50_p95_ms(cleared),
            "cache_cleared_runs": DISCOVERY_RUNS,
            "cache_cleared_runs_finding_all_5": cleared_found.iter().filter(|&&n| n == 5).count(),
            "cached_ms": p50_p95_ms(hits),
            "cached_runs": 1_000,
        })
    });
    eprintln!("discovery/50_nodes: {section}");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results.json");
    results::write_section(&file, "discovery", section).unwrap();
    c.bench_function("discovery_50_nodes_uncached", |b| {
        b.to_async(&rt).iter(|| async {
            client.clear_discovery_cache();
            black_box(client.refresh_providers(&model()).await.unwrap())
        })
    });
    c.bench_function("discovery_50_nodes_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(client.find_providers(&query).await.unwrap()) })
    });
    rt.block_on(async {
        for node in &nodes {
            node.shutdown().await.unwrap();
        }
    });
}

criterion_group!(benches, stream_throughput, latency, ranking, discovery);
criterion_main!(benches);
