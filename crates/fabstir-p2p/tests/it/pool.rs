//! The connection pool on real swarms: the limit holds with least-recently-used eviction,
//! idle connections close, reuse is counted.

use std::sync::Arc;
use std::time::Duration;

use fabstir_p2p::InMemoryRegistry;

use crate::harness::{config, eventually, first_addr, plain_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_limit_holds_and_reuse_is_counted() {
    let registry = Arc::new(InMemoryRegistry::new());
    let mut cfg = config();
    cfg.pool.max_connections = 3;
    let client = plain_node(cfg, &registry).await;
    let mut peers = Vec::new();
    for _ in 0..6 {
        peers.push(plain_node(config(), &registry).await);
    }
    for (i, peer) in peers.iter().enumerate() {
        client.dial(first_addr(peer).await).await.unwrap();
        let stats = client.pool_stats();
        assert!(
            stats.connected <= 3,
            "{} connected after {} dials",
            stats.connected,
            i + 1
        );
    }
    let stats = client.pool_stats();
    assert_eq!(stats.connected, 3);
    assert_eq!(stats.evicted_full, 3);
    // The three most recent are kept; the first three were evicted.
    for (i, peer) in peers.iter().enumerate() {
        assert_eq!(
            client.connected_peers().contains(&peer.peer_id()),
            i >= 3,
            "peer {i}"
        );
    }
    // Using a pooled peer is a hit; an evicted one is a miss and is dialed again.
    let before = client.pool_stats();
    client.connect(peers[5].peer_id()).await.unwrap();
    client.connect(peers[0].peer_id()).await.unwrap();
    let after = client.pool_stats();
    assert_eq!(after.hits, before.hits + 1);
    assert_eq!(after.misses, before.misses + 1);
    assert!(client.connected_peers().contains(&peers[0].peer_id()));
    assert!(after.connected <= 3);
    // Peer 5 was just used, so a new connection evicts someone else.
    assert!(client.connected_peers().contains(&peers[5].peer_id()));
    for node in peers.iter().chain([&client]) {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let registry = Arc::new(InMemoryRegistry::new());
    let mut cfg = config();
    cfg.pool.idle_timeout = Duration::from_millis(500);
    let client = plain_node(cfg, &registry).await;
    let peer = plain_node(config(), &registry).await;
    client.dial(first_addr(&peer).await).await.unwrap();
    assert!(client.connected_peers().contains(&peer.peer_id()));
    let closed = eventually(Duration::from_secs(10), || async {
        client.connected_peers().is_empty() && client.pool_stats().evicted_idle >= 1
    })
    .await;
    assert!(
        closed,
        "idle connection still open: {:?}",
        client.pool_stats()
    );
    // The peer's side saw the connection close too.
    assert!(
        eventually(Duration::from_secs(10), || async {
            peer.connected_peers().is_empty()
        })
        .await
    );
    client.shutdown().await.unwrap();
    peer.shutdown().await.unwrap();
}
