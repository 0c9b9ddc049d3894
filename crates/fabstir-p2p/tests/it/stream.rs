//! Authenticated token streams: authentication outcomes, 10,000 tokens in order,
//! cancellation, and bad frames that end one stream while the host keeps serving.

use std::sync::Arc;
use std::time::Duration;

use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::cid::cid_of;
use fabstir_core::wire::{
    AuthResponse, ClientFrame, HostFrame, StreamErrorCode, StreamToken, TokenBatch,
};
use fabstir_core::{JobId, ModelId};
use fabstir_p2p::{ClientStream, Error, InMemoryRegistry, Network, StreamEvent};
use futures::{AsyncWriteExt, StreamExt};

use crate::harness::{
    RawReader, TestHost, auth_answer, client_key, config, eth_key, eventually, first_addr,
    host_node, padded_token, plain_node, prompt, send_frame, token,
};

struct Setup {
    host: Network,
    service: Arc<TestHost>,
    client: Network,
}

async fn setup(challenge_ttl: Duration) -> Setup {
    let registry = Arc::new(InMemoryRegistry::new());
    let mut cfg = config();
    cfg.stream.challenge_ttl = challenge_ttl;
    let (host, service) = host_node(
        cfg.clone(),
        &registry,
        1,
        vec![ModelId::from_name("m")],
        10,
        None,
        true,
    )
    .await;
    // Job 1 belongs to the client key 0x11, job 2 to 0x22.
    service.allow(JobId(1), auth::address_of(&eth_key(0x11)));
    service.allow(JobId(2), auth::address_of(&eth_key(0x22)));
    let client = plain_node(config(), &registry).await;
    client.dial(first_addr(&host).await).await.unwrap();
    Setup {
        host,
        service,
        client,
    }
}

/// Reads a whole stream: tokens in order, then the final frame.
async fn drain(mut stream: ClientStream) -> Result<(Vec<StreamToken>, usize, u64), Error> {
    let mut tokens = Vec::new();
    let mut batches = 0;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Tokens(TokenBatch {
                first_index,
                tokens: batch,
            }) => {
                assert_eq!(first_index, tokens.len() as u64);
                batches += 1;
                tokens.extend(batch);
            }
            StreamEvent::Done(done) => return Ok((tokens, batches, done.tokens_used)),
        }
    }
    panic!("stream ended without a final frame");
}

fn remote_code(result: Result<ClientStream, Error>) -> StreamErrorCode {
    match result {
        Err(Error::Remote { code, .. }) => code,
        Err(other) => panic!("expected a host refusal, got {other}"),
        Ok(_) => panic!("expected a host refusal, got a stream"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tokens_arrive_in_order_and_intact() {
    let s = setup(Duration::from_secs(30)).await;
    let peer = s.host.peer_id();
    let stream = s
        .client
        .open_stream(peer, JobId(1), client_key(0x11), prompt("count:10000"))
        .await
        .unwrap();
    let (tokens, batches, used) = drain(stream).await.unwrap();
    assert_eq!(used, 10_000);
    assert_eq!(tokens.len(), 10_000);
    assert!((1..=10_000).contains(&batches));
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(*t, token(i as u64), "token {i}");
    }
    // A result the host stored, fetched by its job's client and checked against its CID;
    // bytes served under another result's CID are refused.
    let fetch = |job: u64, text: &'static [u8], key: SigningKey| {
        let client = s.client.clone();
        async move {
            client
                .fetch_result(peer, JobId(job), &cid_of(text), &key)
                .await
        }
    };
    let bytes = fetch(1, b"hello", eth_key(0x11)).await.unwrap();
    assert_eq!(bytes.as_deref(), Some(&b"hello"[..]));
    assert!(fetch(1, b"hullo", eth_key(0x11)).await.is_err());
    assert_eq!(fetch(1, b"other", eth_key(0x11)).await.unwrap(), None);
    // Another client (job 2's) is refused job 1's result, and finds nothing under its own
    // job for job 1's CID.
    match fetch(1, b"hello", eth_key(0x22)).await {
        Err(Error::Remote {
            code: StreamErrorCode::AuthFailed,
            ..
        }) => {}
        other => panic!("another client's result was not refused: {other:?}"),
    }
    assert_eq!(fetch(2, b"hello", eth_key(0x22)).await.unwrap(), None);
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_refuses_wrong_keys_clients_and_replays() {
    let s = setup(Duration::from_secs(30)).await;
    let peer = s.host.peer_id();
    // The right key for its job works.
    let ok = s
        .client
        .open_stream(peer, JobId(1), client_key(0x11), prompt("count:3"))
        .await
        .unwrap();
    assert_eq!(drain(ok).await.unwrap().0.len(), 3);
    // A key that is not the job's client.
    let wrong_key = s
        .client
        .open_stream(peer, JobId(1), client_key(0x33), prompt("count:3"))
        .await;
    assert_eq!(remote_code(wrong_key), StreamErrorCode::AuthFailed);
    // A real client, but of another job.
    let wrong_job = s
        .client
        .open_stream(peer, JobId(2), client_key(0x11), prompt("count:3"))
        .await;
    assert_eq!(remote_code(wrong_job), StreamErrorCode::AuthFailed);
    // A job the host does not know.
    let unknown = s
        .client
        .open_stream(peer, JobId(9), client_key(0x11), prompt("count:3"))
        .await;
    assert_eq!(remote_code(unknown), StreamErrorCode::UnknownJob);
    assert_eq!(s.service.produced(), 3, "no refused job ran");

    // A replayed answer: valid once, refused on a new stream.
    let mut first = s.client.open_raw_stream(peer).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    let Some(HostFrame::Challenge(challenge)) = reader.next(&mut first).await.unwrap() else {
        panic!("expected a challenge");
    };
    let answer = auth_answer(&challenge, JobId(1), &eth_key(0x11));
    send_frame(&mut first, &answer).await;
    assert_eq!(
        reader.next(&mut first).await.unwrap(),
        Some(HostFrame::Authenticated)
    );
    send_frame(&mut first, &ClientFrame::Cancel).await;
    drop(first);

    let mut second = s.client.open_raw_stream(peer).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    assert!(matches!(
        reader.next(&mut second).await.unwrap(),
        Some(HostFrame::Challenge(_))
    ));
    send_frame(&mut second, &answer).await;
    match reader.next(&mut second).await.unwrap() {
        Some(HostFrame::Error(e)) => assert_eq!(e.code, StreamErrorCode::ChallengeExpired),
        other => panic!("replay accepted: {other:?}"),
    }
    // A signature that is not a signature.
    let mut third = s.client.open_raw_stream(peer).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    let Some(HostFrame::Challenge(c)) = reader.next(&mut third).await.unwrap() else {
        panic!("expected a challenge");
    };
    let garbage = ClientFrame::Auth(AuthResponse {
        job: JobId(1),
        nonce: c.nonce,
        signature: vec![7; 65],
    });
    send_frame(&mut third, &garbage).await;
    match reader.next(&mut third).await.unwrap() {
        Some(HostFrame::Error(e)) => assert_eq!(e.code, StreamErrorCode::AuthFailed),
        other => panic!("garbage signature accepted: {other:?}"),
    }
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_challenge_is_refused() {
    let s = setup(Duration::from_secs(1)).await;
    let peer = s.host.peer_id();
    let mut raw = s.client.open_raw_stream(peer).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    let Some(HostFrame::Challenge(c)) = reader.next(&mut raw).await.unwrap() else {
        panic!("expected a challenge");
    };
    // Wait past the challenge's expiry (in whole seconds) before answering.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let answer = auth_answer(&c, JobId(1), &eth_key(0x11));
    send_frame(&mut raw, &answer).await;
    match reader.next(&mut raw).await.unwrap() {
        Some(HostFrame::Error(e)) => assert_eq!(e.code, StreamErrorCode::ChallengeExpired),
        other => panic!("expired challenge accepted: {other:?}"),
    }
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_or_dropping_a_stream_stops_the_producer() {
    let s = setup(Duration::from_secs(30)).await;
    let peer = s.host.peer_id();
    let mut stream = s
        .client
        .open_stream(peer, JobId(1), client_key(0x11), prompt("forever"))
        .await
        .unwrap();
    let mut received = 0;
    while received < 500 {
        match stream.next().await.unwrap().unwrap() {
            StreamEvent::Tokens(batch) => received += batch.tokens.len(),
            StreamEvent::Done(_) => panic!("an endless job finished"),
        }
    }
    stream.cancel().await.unwrap();
    let service = s.service.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            service.cancelled() == 1
        })
        .await,
        "the producer did not stop after Cancel"
    );
    // Dropping the stream stops it too.
    let mut stream = s
        .client
        .open_stream(peer, JobId(1), client_key(0x11), prompt("forever"))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(StreamEvent::Tokens(_)))
    ));
    drop(stream);
    let service = s.service.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            service.cancelled() == 2
        })
        .await,
        "the producer did not stop after the stream was dropped"
    );
    // The producer really stopped: its count no longer grows.
    let before = s.service.produced();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.service.produced(), before);
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

/// Sends `bytes` after the challenge and expects the host to end the stream with a
/// `Malformed` error frame (or a bare close).
async fn expect_rejected(client: &Network, peer: fabstir_p2p::PeerId, bytes: &[u8], close: bool) {
    let mut raw = client.open_raw_stream(peer).await.unwrap();
    let mut reader = RawReader::<HostFrame>::new();
    assert!(matches!(
        reader.next(&mut raw).await.unwrap(),
        Some(HostFrame::Challenge(_))
    ));
    raw.write_all(bytes).await.unwrap();
    raw.flush().await.unwrap();
    if close {
        raw.close().await.unwrap();
    }
    match reader.next(&mut raw).await {
        Ok(Some(HostFrame::Error(e))) => assert_eq!(e.code, StreamErrorCode::Malformed),
        Ok(None) | Err(_) => {}
        Ok(Some(other)) => panic!("bad frame accepted: {other:?}"),
    }
    // Nothing more comes: the host dropped this stream.
    assert!(!matches!(reader.next(&mut raw).await, Ok(Some(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_end_one_stream_and_the_host_keeps_serving() {
    let s = setup(Duration::from_secs(30)).await;
    let peer = s.host.peer_id();
    // Oversized: a header announcing 4 GiB.
    expect_rejected(&s.client, peer, &u32::MAX.to_be_bytes(), false).await;
    // Malformed: a frame of garbage.
    expect_rejected(
        &s.client,
        peer,
        &[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff],
        false,
    )
    .await;
    // Wrong version.
    let mut frame = fabstir_core::wire::encode_frame(&ClientFrame::Cancel).unwrap();
    frame[4] = 9;
    expect_rejected(&s.client, peer, &frame, false).await;
    // Truncated: a header for 100 bytes, 10 bytes, then the end of the stream.
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[1; 10]);
    expect_rejected(&s.client, peer, &truncated, true).await;
    // A prompt before authentication.
    let early = fabstir_core::wire::encode_frame(&ClientFrame::Prompt(prompt("count:1"))).unwrap();
    expect_rejected(&s.client, peer, &early, false).await;

    // Meanwhile another client is served in full.
    let registry = Arc::new(InMemoryRegistry::new());
    registry.insert(s.service.registry_entry().unwrap());
    let other = plain_node(config(), &registry).await;
    other.dial(first_addr(&s.host).await).await.unwrap();
    let stream = other
        .open_stream(peer, JobId(1), client_key(0x11), prompt("count:100"))
        .await
        .unwrap();
    assert_eq!(drain(stream).await.unwrap().0.len(), 100);
    other.shutdown().await.unwrap();
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_coalesced_batches() {
    let s = setup(Duration::from_secs(30)).await;
    let peer = s.host.peer_id();
    let stream = s
        .client
        .open_stream(peer, JobId(1), client_key(0x11), prompt("count:4000:pad"))
        .await
        .unwrap();
    // 4 MB of tokens against a 256 KiB stream window: while we do not read, the host's
    // writer blocks and the producer's tokens queue up behind it.
    let service = s.service.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            service.produced() > 300
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tokens, batches, used) = drain(stream).await.unwrap();
    assert_eq!(used, 4000);
    assert_eq!(tokens.len(), 4000);
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(*t, padded_token(i as u64), "token {i}");
    }
    assert!(
        batches < 4000,
        "no coalescing: {batches} batches for 4000 tokens"
    );
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}
