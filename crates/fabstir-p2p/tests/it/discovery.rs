//! Discovery through bootstrap + Kademlia in a 22-node network, capability verification and
//! ranking, and a host that leaves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use fabstir_core::primitives::Address;
use fabstir_core::select_optimal;
use fabstir_core::wire::{NegotiationRequest, NegotiationResponse, QuoteRequest};
use fabstir_core::{ModelId, ProviderQuery, SelectionCriteria, TokenAmount};
use fabstir_p2p::testing::Fault;
use fabstir_p2p::{HostService, InMemoryRegistry, Network, PeerId};

use crate::harness::{config, eventually, first_addr, host_node, plain_node};

fn ids(nodes: &[fabstir_core::DiscoveredNode]) -> BTreeSet<PeerId> {
    nodes
        .iter()
        .map(|n| fabstir_p2p::libp2p_peer_id(&n.capabilities.peer_id).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_models_verified_providers_are_found_through_the_dht() {
    let registry = Arc::new(InMemoryRegistry::new());
    let (a, b, c) = (
        ModelId::from_name("model-a"),
        ModelId::from_name("model-b"),
        ModelId::from_name("model-c"),
    );
    let mut cfg = config();
    // Short enough that the departure check below does not wait long for a stale entry.
    cfg.discovery_ttl = Duration::from_secs(2);

    let boot = plain_node(cfg.clone(), &registry).await;
    cfg.bootstrap_peers = vec![first_addr(&boot).await];

    let mut hosts = Vec::new();
    for (seed, models, price) in [
        (1u8, vec![a], 10u64),
        (2, vec![a, b], 20),
        (3, vec![c], 30),
        (4, vec![b], 5),
    ] {
        hosts.push(host_node(cfg.clone(), &registry, seed, models, price, None, true).await);
    }
    // Serves model a, but its capabilities are signed by another key.
    let forged = host_node(
        cfg.clone(),
        &registry,
        5,
        vec![a],
        1,
        Some(Fault::ForgedCapabilities),
        true,
    )
    .await;
    // Serves model a with a valid signature, but the registry names another owner.
    let unregistered = host_node(cfg.clone(), &registry, 6, vec![a], 1, None, false).await;
    let mut wrong_entry = unregistered.1.registry_entry().unwrap();
    wrong_entry.address = Address::repeat_byte(0x66);
    registry.insert(wrong_entry);

    let mut peers: Vec<Network> = Vec::new();
    for _ in 0..16 {
        peers.push(plain_node(cfg.clone(), &registry).await);
    }
    let everyone: Vec<Network> = hosts
        .iter()
        .map(|(n, _)| n.clone())
        .chain([forged.0.clone(), unregistered.0.clone()])
        .chain(peers.iter().cloned())
        .collect();
    assert!(everyone.len() + 1 >= 20, "at least 20 nodes");
    for node in &everyone {
        node.bootstrap().await.unwrap();
    }
    for (node, host) in hosts.iter().chain([&forged, &unregistered]) {
        for model in host.models() {
            node.advertise(model).await.unwrap();
        }
    }

    let client = &peers[15];
    let expect = |models: &[ModelId]| -> BTreeSet<PeerId> {
        hosts
            .iter()
            .filter(|(_, h)| h.models().iter().any(|m| models.contains(m)))
            .map(|(n, _)| n.peer_id())
            .collect()
    };
    for model in [a, b, c] {
        // The DHT returns every advertiser, forged ones included...
        let raw: BTreeSet<PeerId> = client
            .get_providers(&model)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert!(expect(&[model]).is_subset(&raw), "DHT providers of {model}");
        // ...discovery keeps only the verified ones.
        let found = client
            .find_providers(&ProviderQuery::new(model, Address::zero()))
            .await
            .unwrap();
        assert_eq!(
            ids(&found),
            expect(&[model]),
            "verified providers of {model}"
        );
        for node in &found {
            let host = &hosts
                .iter()
                .find(|(n, _)| n.node_peer_id().unwrap() == node.capabilities.peer_id)
                .unwrap()
                .1;
            assert_eq!(node.capabilities.eth_address, host.address());
            assert!(node.capabilities.serves(&model));
            assert!(!node.addresses.is_empty());
        }
    }
    // The forged and wrongly registered hosts were asked (they are in the DHT) and dropped.
    let raw_a: BTreeSet<PeerId> = client
        .get_providers(&a)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(raw_a.contains(&forged.0.peer_id()) && raw_a.contains(&unregistered.0.peer_id()));

    // Price filter and ranking over what discovery found.
    let mut query = ProviderQuery::new(b, Address::zero());
    query.max_price = Some(TokenAmount::from_base_units(10u64));
    let cheap = client.find_providers(&query).await.unwrap();
    assert_eq!(ids(&cheap), BTreeSet::from([hosts[3].0.peer_id()]));
    let all_b = client
        .find_providers(&ProviderQuery::new(b, Address::zero()))
        .await
        .unwrap();
    let mut criteria = SelectionCriteria::new(ProviderQuery::new(b, Address::zero()));
    criteria.weights.latency = 0;
    let best = select_optimal(all_b, &criteria).unwrap();
    assert_eq!(
        best.capabilities.eth_address,
        hosts[3].1.address(),
        "cheapest wins"
    );

    // Negotiation with a found host.
    let quote = client
        .negotiate(
            hosts[0].0.peer_id(),
            NegotiationRequest::Quote(QuoteRequest {
                model: a,
                max_tokens: 5000,
                token: Address::zero(),
                offered_price_per_token: TokenAmount::from_base_units(10u64),
                prompt_hash: fabstir_core::job::prompt_hash("hi"),
                client: Address::repeat_byte(9),
            }),
        )
        .await
        .unwrap();
    match quote {
        NegotiationResponse::Quote(q) => {
            assert_eq!(q.max_tokens, 1000);
            assert_eq!(q.host, hosts[0].1.address());
        }
        other => panic!("expected a quote, got {other:?}"),
    }

    // Host 1 (model a) leaves: it stops being returned while host 2 still is.
    let leaving = hosts[0].0.peer_id();
    hosts[0].0.shutdown().await.unwrap();
    let gone = eventually(Duration::from_secs(30), || async {
        let found = client
            .find_providers(&ProviderQuery::new(a, Address::zero()))
            .await
            .unwrap_or_default();
        !ids(&found).contains(&leaving) && ids(&found).contains(&hosts[1].0.peer_id())
    })
    .await;
    assert!(gone, "a host that left is still returned");
    for node in everyone.iter().skip(1).chain([&boot]) {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_that_never_answer_do_not_hold_up_discovery() {
    let registry = Arc::new(InMemoryRegistry::new());
    let model = ModelId::from_name("crowded");
    let mut cfg = config();
    // Far longer than the discovery deadline: without it, discovery waits this long.
    cfg.request_timeout = Duration::from_secs(120);
    cfg.discovery_deadline = Duration::from_millis(500);
    let (honest, _) = host_node(cfg.clone(), &registry, 1, vec![model], 10, None, true).await;
    let mut crowd = Vec::new();
    for seed in 2..10u8 {
        let silent = Some(Fault::SilentCapabilities);
        crowd.push(host_node(cfg.clone(), &registry, seed, vec![model], 1, silent, true).await);
    }
    let client = plain_node(cfg.clone(), &registry).await;
    let boot = first_addr(&honest).await;
    for node in crowd.iter().map(|(n, _)| n).chain([&client]) {
        node.dial(boot.clone()).await.unwrap();
        node.bootstrap().await.unwrap();
    }
    honest.advertise(&model).await.unwrap();
    for (node, _) in &crowd {
        node.advertise(&model).await.unwrap();
    }
    let found = tokio::time::timeout(Duration::from_secs(30), client.refresh_providers(&model))
        .await
        .expect("discovery ends at its deadline, not when the silent providers time out")
        .unwrap();
    let peers: Vec<PeerId> = found
        .iter()
        .map(|n| fabstir_p2p::libp2p_peer_id(&n.capabilities.peer_id).unwrap())
        .collect();
    assert_eq!(
        peers,
        vec![honest.peer_id()],
        "the honest host, and only it"
    );
    client.shutdown().await.unwrap();
    for (node, _) in crowd {
        node.shutdown().await.unwrap();
    }
    honest.shutdown().await.unwrap();
}
