//! An independent libp2p implementation against a Rust node: the js-libp2p peer of
//! `tests/interop/js-peer.mjs` (npm `libp2p` and `@libp2p/kad-dht`, pinned in
//! `tools/package.json`, installed by `cargo xtask tools`) dials a host, reads its Identify,
//! pings it and finds the model's providers with a standard Kademlia `GET_PROVIDERS` under
//! `/fabstir/kad/1.0.0`, computing the provider key itself from the model id. It keeps the
//! transport, Identify, Ping and the DHT standard as the Rust side changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fabstir_core::ModelId;
use fabstir_core::auth::SigningKey;
use fabstir_p2p::testing::{TEST_CHAIN_ID, TestHost};
use fabstir_p2p::{InMemoryRegistry, Keypair, Network, P2pConfig, provider_key_bytes};

/// The workspace root (this crate is `<root>/tests`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives in the workspace")
        .to_path_buf()
}

/// The js peer, placed beside the installed `node_modules` so that its imports resolve.
fn js_peer() -> PathBuf {
    let tools = root().join(".tools");
    assert!(
        tools.join("node_modules/libp2p").is_dir(),
        "js-libp2p is not installed in {}: run `cargo xtask tools`",
        tools.display()
    );
    let dir = tools.join("interop");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("js-peer.mjs");
    std::fs::copy(root().join("tests/interop/js-peer.mjs"), &script).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_libp2p_peer_identifies_pings_and_finds_providers_through_the_dht() {
    let script = js_peer();
    let model = ModelId::from_name("interop-model");
    let keypair = Keypair::generate_ed25519();
    let peer = keypair.public().to_peer_id();
    let key = SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let host = Arc::new(
        TestHost::builder(key, peer)
            .chain_id(TEST_CHAIN_ID)
            .models(vec![model])
            .build(),
    );
    let registry = Arc::new(InMemoryRegistry::new());
    registry.insert(host.registry_entry().unwrap());
    let config = P2pConfig {
        chain_id: TEST_CHAIN_ID,
        ..P2pConfig::loopback()
    };
    let node = Network::spawn(config, keypair, registry, Some(host))
        .await
        .unwrap();
    node.advertise(&model).await.unwrap();
    // The node's listen addresses end in its peer id.
    let target = node.listen_addrs().await.unwrap().remove(0).to_string();
    assert!(target.ends_with(&format!("/p2p/{peer}")), "{target}");

    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .arg(&target)
            .arg(hex::encode(model.as_bytes()))
            .output()
    })
    .await
    .unwrap()
    .expect("node (Node.js 20+) runs the js peer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the js peer failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the js peer printed {stdout:?} ({e}); stderr: {stderr}"));

    assert_eq!(report["peer"], peer.to_string(), "the peer dialed");
    assert_eq!(report["agentVersion"], fabstir_p2p::agent_version());
    assert_eq!(report["protocolVersion"], fabstir_p2p::IDENTIFY_PROTOCOL);
    let protocols: Vec<&str> = report["protocols"]
        .as_array()
        .expect("Identify's protocols")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    for protocol in [
        "/ipfs/id/1.0.0",
        "/ipfs/ping/1.0.0",
        "/fabstir/kad/1.0.0",
        "/fabstir/stream/1.0.0",
        "/fabstir/session/1.0.0",
        "/fabstir/capabilities/1.0.0",
    ] {
        assert!(protocols.contains(&protocol), "{protocol} in {protocols:?}");
    }
    assert!(report["rttMs"].as_f64().is_some(), "a ping's round trip");
    // The js peer computed the provider key from the model id alone: it is ours.
    assert_eq!(
        report["providerKey"],
        hex::encode(provider_key_bytes(&model)),
        "the provider key, computed independently"
    );
    let providers: Vec<&str> = report["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert_eq!(
        providers,
        vec![peer.to_string()],
        "the host provides the model"
    );
    node.shutdown().await.unwrap();
}
