//! The other transports: QUIC and WebSocket (the browsers' way in) on loopback.

use std::sync::Arc;

use fabstir_p2p::{InMemoryRegistry, P2pConfig, agent_version};
use futures::StreamExt;

use crate::harness::{config, plain_node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_websocket_listeners_accept_connections() {
    let registry = Arc::new(InMemoryRegistry::new());
    let server_cfg = P2pConfig {
        listen_addrs: ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/ws"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect(),
        ..config()
    };
    let server = plain_node(server_cfg, &registry).await;
    let addrs = server.listen_addrs().await.unwrap();
    assert_eq!(addrs.len(), 2);
    for addr in addrs {
        let client = plain_node(config(), &registry).await;
        let mut events = Box::pin(client.events());
        client.dial(addr.clone()).await.unwrap();
        assert!(
            client.connected_peers().contains(&server.peer_id()),
            "{addr}"
        );
        // Identify runs over it and reports our agent.
        loop {
            if let Some(fabstir_p2p::NetworkEvent::Identified { peer, agent }) = events.next().await
                && peer == server.peer_id()
            {
                assert_eq!(agent, agent_version());
                break;
            }
        }
        client.shutdown().await.unwrap();
    }
    server.shutdown().await.unwrap();
}
