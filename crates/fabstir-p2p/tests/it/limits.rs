//! Hostile peers against a host's stream slots, on real swarms: streams that never
//! authenticate, slow-loris handshakes, oversized frames before authentication and a flood of
//! dropped challenges. Each time an honest client's job still streams to the end.

use std::sync::Arc;
use std::time::Duration;

use fabstir_core::auth;
use fabstir_core::wire::{
    HostFrame, MAX_HANDSHAKE_FRAME_LEN, MAX_TOKEN_TEXT_BYTES, StreamErrorCode,
};
use fabstir_core::{JobId, ModelId};
use fabstir_p2p::{InMemoryRegistry, Network, P2pConfig, StreamEvent};
use futures::{AsyncWriteExt, StreamExt};

use crate::harness::{
    RawReader, TestHost, auth_answer, client_key, config, eth_key, first_addr, host_node,
    plain_node, prompt, send_frame,
};

/// A host with `host_config`, an honest client (job 1 is its, key 0x11) and an attacker,
/// both connected.
struct Field {
    host: Network,
    _service: Arc<TestHost>,
    client: Network,
    attacker: Network,
}

async fn field(host_config: P2pConfig) -> Field {
    let registry = Arc::new(InMemoryRegistry::new());
    let (host, service) = host_node(
        host_config,
        &registry,
        1,
        vec![ModelId::from_name("m")],
        10,
        None,
        true,
    )
    .await;
    service.allow(JobId(1), auth::address_of(&eth_key(0x11)));
    let client = plain_node(config(), &registry).await;
    let attacker = plain_node(config(), &registry).await;
    let addr = first_addr(&host).await;
    client.dial(addr.clone()).await.unwrap();
    attacker.dial(addr).await.unwrap();
    Field {
        host,
        _service: service,
        client,
        attacker,
    }
}

impl Field {
    /// The honest client's job, streamed to its final frame: the tokens it got.
    async fn honest_job(&self) -> u64 {
        let mut stream = self
            .client
            .open_stream(
                self.host.peer_id(),
                JobId(1),
                client_key(0x11),
                prompt("count:20"),
            )
            .await
            .expect("the honest client's stream opens");
        let mut tokens = 0;
        while let Some(event) = stream.next().await {
            match event.expect("the honest stream runs") {
                StreamEvent::Tokens(batch) => tokens += batch.tokens.len() as u64,
                StreamEvent::Done(done) => {
                    assert_eq!(done.tokens_used, tokens);
                    return tokens;
                }
            }
        }
        panic!("the honest stream ended without its final frame");
    }

    /// An attacker's raw stream that has read its challenge.
    async fn challenged(&self) -> (libp2p::Stream, RawReader<HostFrame>, [u8; 32]) {
        let mut raw = self
            .attacker
            .open_raw_stream(self.host.peer_id())
            .await
            .unwrap();
        let mut reader = RawReader::<HostFrame>::new();
        match reader.next(&mut raw).await.unwrap() {
            Some(HostFrame::Challenge(c)) => (raw, reader, c.nonce),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    async fn shut_down(self) {
        self.attacker.shutdown().await.unwrap();
        self.client.shutdown().await.unwrap();
        self.host.shutdown().await.unwrap();
    }
}

/// A host serving two streams at once.
fn small_host() -> P2pConfig {
    let mut cfg = config();
    cfg.stream.max_concurrent = 2;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_never_authenticate_hold_no_stream_slot() {
    let f = field(small_host()).await;
    // Twice as many silent streams as the host serves at once, each holding its challenge.
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(f.challenged().await);
    }
    assert_eq!(f.honest_job().await, 20, "the honest job streams in full");
    drop(silent);
    f.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_handshakes_are_cut_and_hold_no_stream_slot() {
    let mut cfg = small_host();
    cfg.stream.handshake_timeout = Duration::from_secs(2);
    let f = field(cfg).await;
    let mut dripping = Vec::new();
    for _ in 0..2 {
        dripping.push(f.challenged().await);
    }
    // One byte at a time of a frame that never completes.
    let drip = async {
        for _ in 0..10 {
            for (raw, _, _) in &mut dripping {
                let _ = raw.write_all(&[0]).await;
                let _ = raw.flush().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let (tokens, ()) = tokio::join!(f.honest_job(), drip);
    assert_eq!(
        tokens, 20,
        "the honest job streams in full while the attacker drips"
    );
    // The host cut every dripping stream at its handshake timeout.
    for (raw, reader, _) in &mut dripping {
        match reader.next(raw).await {
            Ok(Some(HostFrame::Error(e))) => assert_eq!(e.code, StreamErrorCode::Malformed),
            Ok(None) | Err(_) => {}
            Ok(Some(other)) => panic!("a dripping stream got {other:?}"),
        }
    }
    f.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_before_authentication_is_refused_on_its_header() {
    let f = field(config()).await;
    let (mut raw, mut reader, _) = f.challenged().await;
    // The header announces a prompt-sized frame; nothing follows it.
    let announced = u32::try_from(MAX_HANDSHAKE_FRAME_LEN * 100).unwrap();
    raw.write_all(&announced.to_be_bytes()).await.unwrap();
    raw.flush().await.unwrap();
    match reader.next(&mut raw).await.unwrap() {
        Some(HostFrame::Error(e)) => {
            assert_eq!(e.code, StreamErrorCode::Malformed);
            assert!(
                e.message.contains(&MAX_HANDSHAKE_FRAME_LEN.to_string()),
                "refused for its size, not after waiting for it: {}",
                e.message
            );
        }
        other => panic!("an oversized answer got {other:?}"),
    }
    assert_eq!(f.honest_job().await, 20);
    f.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_challenges_do_not_push_out_a_client_that_is_still_signing() {
    let mut cfg = config();
    cfg.stream.challenge_capacity = 16;
    let f = field(cfg).await;
    // An honest client (speaking the protocol by hand) reads its challenge and takes its time.
    let mut honest = f.client.open_raw_stream(f.host.peer_id()).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    let Some(HostFrame::Challenge(challenge)) = reader.next(&mut honest).await.unwrap() else {
        panic!("expected a challenge");
    };
    // Meanwhile the attacker takes ten times the book's capacity in challenges and drops
    // each one (waiting until the host has let go of it).
    for _ in 0..160 {
        let (mut raw, mut attacker_reader, _) = f.challenged().await;
        raw.close().await.unwrap();
        while let Ok(Some(_)) = attacker_reader.next(&mut raw).await {}
    }
    let answer = auth_answer(&challenge, JobId(1), &eth_key(0x11));
    send_frame(&mut honest, &answer).await;
    assert_eq!(
        reader.next(&mut honest).await.unwrap(),
        Some(HostFrame::Authenticated),
        "the honest client's challenge is still valid"
    );
    f.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_handshake() {
    let mut cfg = config();
    cfg.stream.max_handshakes_per_peer = 3;
    let f = field(cfg).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(f.challenged().await);
    }
    let mut extra = f.attacker.open_raw_stream(f.host.peer_id()).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    match reader.next(&mut extra).await.unwrap() {
        Some(HostFrame::Error(e)) => assert_eq!(e.code, StreamErrorCode::Unavailable),
        other => panic!("a fourth handshake from one peer got {other:?}"),
    }
    // Another peer is not affected; and the attacker's slots come back when it lets go.
    assert_eq!(f.honest_job().await, 20);
    drop(held);
    let mut again = None;
    for _ in 0..50 {
        let mut raw = f.attacker.open_raw_stream(f.host.peer_id()).await.unwrap();
        let mut reader = RawReader::<HostFrame>::new();
        if let Ok(Some(HostFrame::Challenge(_))) = reader.next(&mut raw).await {
            again = Some(raw);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "the attacker's slots were given back");
    f.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_sending_tokens_longer_than_a_token_may_be_is_cut_off() {
    let f = field(config()).await;
    let mut stream = f
        .client
        .open_stream(
            f.host.peer_id(),
            JobId(1),
            client_key(0x11),
            prompt("count:5:huge"),
        )
        .await
        .unwrap();
    let mut texts = 0;
    let error = loop {
        match stream.next().await {
            Some(Ok(StreamEvent::Tokens(batch))) => texts += batch.tokens.len(),
            Some(Ok(StreamEvent::Done(_))) => panic!("a stream of oversized tokens completed"),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without a verdict"),
        }
    };
    assert_eq!(texts, 0, "no oversized token reached the application");
    assert!(
        error
            .to_string()
            .contains(&MAX_TOKEN_TEXT_BYTES.to_string()),
        "refused for the token's size: {error}"
    );
    f.shut_down().await;
}
