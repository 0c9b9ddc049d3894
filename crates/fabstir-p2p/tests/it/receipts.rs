//! Receipts on the stream, with a hostile client written for each test: one that stops
//! acknowledging, one that sends receipts for tokens it did not get or replays an older one,
//! one that gets nothing; and a host padding its stream with empty tokens. What the host
//! settles with is read from the scripted host.

use std::sync::Arc;
use std::time::Duration;

use fabstir_core::auth;
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt};
use fabstir_core::wire::{ClientFrame, StreamErrorCode};
use fabstir_core::{JobId, ModelId, StreamEvent};
use fabstir_p2p::testing::RawClient;
use fabstir_p2p::{InMemoryRegistry, Network};
use futures::StreamExt;

use crate::harness::{
    CHAIN, TestHost, client_key, config, eth_key, eventually, first_addr, host_node, plain_node,
    prompt,
};

/// The host's credit window in these tests.
const WINDOW: u32 = 8;

struct Setup {
    host: Network,
    service: Arc<TestHost>,
    client: Network,
    /// The slow link between them, if any.
    _link: Option<fabstir_p2p::testing::DelayProxy>,
}

async fn setup() -> Setup {
    setup_over(None).await
}

/// The host and a client, connected directly or through a link adding `delay` each way.
async fn setup_over(delay: Option<Duration>) -> Setup {
    let registry = Arc::new(InMemoryRegistry::new());
    let mut cfg = config();
    cfg.stream.credit_window = WINDOW;
    cfg.stream.stall_timeout = Duration::from_secs(1);
    let (host, service) = host_node(
        cfg,
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
    let direct = first_addr(&host).await;
    let link = match delay {
        None => {
            client.dial(direct).await.unwrap();
            None
        }
        Some(delay) => {
            let port = direct
                .iter()
                .find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                    _ => None,
                })
                .unwrap();
            let proxy =
                fabstir_p2p::testing::DelayProxy::start(([127, 0, 0, 1], port).into(), delay)
                    .await
                    .unwrap();
            let via = format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                proxy.addr().port(),
                host.peer_id()
            );
            client.dial(via.parse().unwrap()).await.unwrap();
            Some(proxy)
        }
    };
    Setup {
        host,
        service,
        client,
        _link: link,
    }
}

fn domain() -> ReceiptDomain {
    ReceiptDomain {
        chain_id: CHAIN,
        marketplace: Default::default(),
    }
}

/// A client driving the stream by hand: authenticated as job 1's client, prompt sent.
async fn raw_client(s: &Setup, text: &str) -> RawClient {
    let client = RawClient::start(
        &s.client,
        s.host.peer_id(),
        JobId(1),
        domain(),
        eth_key(0x11),
        prompt(text),
    )
    .await
    .unwrap();
    assert_eq!(client.challenge().credit_window, WINDOW);
    client
}

/// How the scripted host settled job 1, once it has.
async fn settled(service: &TestHost) -> Option<SignedReceipt> {
    assert!(
        eventually(Duration::from_secs(10), || async {
            service.settled(JobId(1)).is_some()
        })
        .await,
        "the host settles once the stream ends"
    );
    service.settled(JobId(1)).flatten()
}

/// Streams job 1 with the real client to its end: the tokens delivered and the final frame.
async fn stream_job(s: &Setup, text: &str) -> (usize, Option<fabstir_core::wire::StreamDone>) {
    let mut stream = s
        .client
        .open_stream(s.host.peer_id(), JobId(1), client_key(0x11), prompt(text))
        .await
        .unwrap();
    let (mut delivered, mut done) = (0, None);
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Tokens(batch) => delivered += batch.tokens.len(),
            StreamEvent::Done(d) => done = Some(d),
        }
    }
    (delivered, done)
}

async fn shut(s: Setup) {
    s.client.shutdown().await.unwrap();
    s.host.shutdown().await.unwrap();
}

/// The client acknowledges 4 tokens, then stops: the host sends exactly one window more,
/// waits, ends the stream as unacknowledged and settles for the 4 receipted tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_acknowledging_gets_one_window_and_pays_its_receipts() {
    let s = setup().await;
    let mut client = raw_client(&s, "count:1000").await;
    let (received, code) = client.read_to_end(&[4]).await;
    assert_eq!(
        received,
        4 + u64::from(WINDOW),
        "one window past the receipt"
    );
    assert_eq!(code, Some(StreamErrorCode::Unacknowledged));
    let receipt = settled(&s.service).await.expect("the receipt for 4");
    assert_eq!(receipt.tokens, 4);
    assert!(
        s.service.produced() < 1000,
        "the host stopped generating ({} produced)",
        s.service.produced()
    );
    shut(s).await;
}

/// A receipt for tokens the host never sent (more than the escrow would cover too) is
/// refused when it arrives; the host settles with the last good one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_undelivered_tokens_is_refused_on_arrival() {
    let s = setup().await;
    let mut client = raw_client(&s, "count:1000").await;
    // Read a few tokens, receipt them honestly, then claim far more than arrived.
    let got = client.read_until(2).await.unwrap();
    let honest = client.receipt();
    client.send_receipt(honest).await.unwrap();
    let mut inflated = client.receipt();
    inflated.tokens = 1_000_000;
    client.send_receipt(inflated).await.unwrap();
    let (more, code) = client.read_to_end(&[]).await;
    let received = got.max(more);
    assert_eq!(code, Some(StreamErrorCode::BadReceipt));
    assert!(received >= 2);
    let receipt = settled(&s.service).await.expect("the honest receipt");
    assert!(receipt.tokens >= 2 && receipt.tokens <= received);
    shut(s).await;
}

/// A receipt signed by someone else, or an older receipt replayed after a newer one, ends
/// the stream with `BadReceipt`; the newest good receipt is what the host settles with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_receipts_end_the_stream() {
    let s = setup().await;
    let mut client = raw_client(&s, "count:1000").await;
    client.read_until(2).await.unwrap();
    let older = client.receipt();
    client.send_receipt(older.clone()).await.unwrap();
    client.read_until(older.tokens + 1).await.unwrap();
    let newer = client.receipt();
    let newest = newer.tokens;
    client.send_receipt(newer).await.unwrap();
    client.send_receipt(older).await.unwrap();
    let (_, code) = client.read_to_end(&[]).await;
    assert_eq!(code, Some(StreamErrorCode::BadReceipt));
    assert_eq!(
        settled(&s.service).await.expect("the newest").tokens,
        newest
    );

    // A stranger's signature over the right receipt.
    let s2 = setup().await;
    let mut client = raw_client(&s2, "count:1000").await;
    client.read_until(1).await.unwrap();
    let forged = client.receipt_signed_by(&eth_key(0x99));
    client.send_receipt(forged).await.unwrap();
    let (_, code) = client.read_to_end(&[]).await;
    assert_eq!(code, Some(StreamErrorCode::BadReceipt));
    assert_eq!(
        settled(&s2.service).await,
        None,
        "nothing signed by the client"
    );
    shut(s2).await;
    shut(s).await;
}

/// A client that receives nothing signs nothing: the host has no receipt to settle with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_received_nothing_signed_nothing() {
    let s = setup().await;
    let mut client = raw_client(&s, "count:1000").await;
    client.send(&ClientFrame::Cancel).await.unwrap();
    let _ = client.read_to_end(&[]).await;
    assert_eq!(settled(&s.service).await, None);
    shut(s).await;
}

/// A host padding its stream with empty-text tokens earns nothing for them: the honest
/// client's final receipt counts only tokens with text, while its transcript commits to all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_text_padding_earns_nothing() {
    let s = setup().await;
    let (delivered, done) = stream_job(&s, "count:20:gaps").await;
    assert_eq!(done.expect("a final frame").tokens_used, 20);
    assert_eq!(delivered, 20);
    let receipt = settled(&s.service).await.expect("a final receipt");
    assert_eq!(receipt.tokens, 10, "only the 10 tokens with text are paid");
    shut(s).await;
}

/// Over a link with 20 ms each way (a [`DelayProxy`](fabstir_p2p::testing::DelayProxy)
/// between client and host), the real client's receipts keep the stream going through the
/// whole job, and the host settles for every counted token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_slow_link_every_token_is_receipted() {
    let s = setup_over(Some(Duration::from_millis(20))).await;
    let (tokens, done) = stream_job(&s, "count:200").await;
    assert!(done.is_some());
    assert_eq!(tokens, 200);
    let receipt = settled(&s.service).await.expect("a receipt");
    assert_eq!(receipt.tokens, 200, "every counted token receipted");
    shut(s).await;
}
