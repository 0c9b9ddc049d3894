//! The suite over `IpfsStore` against a fake Kubo node, and its failure modes.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use fabstir_storage::{Cid, Error, IpfsConfig, IpfsStore, ResultStore, cid_of};

use crate::TestResult;
use crate::fake_kubo::{FakeKubo, Mode, stored};
use crate::suite::{self, Harness, LIMIT};

struct Ipfs {
    kubo: FakeKubo,
    store: IpfsStore,
}

#[async_trait]
impl Harness for Ipfs {
    fn store(&self) -> &dyn ResultStore {
        &self.store
    }

    async fn corrupt(&self, cid: &Cid, bytes: &[u8]) {
        self.kubo
            .state()
            .blocks
            .insert(cid.to_string(), bytes.to_vec());
    }
}

fn config(kubo: &FakeKubo) -> IpfsConfig {
    IpfsConfig {
        url: kubo.url(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        max_size: LIMIT,
        offline: true,
        ..IpfsConfig::default()
    }
}

#[tokio::test]
async fn suite() -> TestResult {
    let kubo = FakeKubo::start(Mode::Honest).await?;
    let store = IpfsStore::new(config(&kubo))?;
    suite::run(&Ipfs { kubo, store }).await;
    Ok(())
}

#[tokio::test]
async fn add_uses_raw_leaves_cid_v1_and_pins() -> TestResult {
    let kubo = FakeKubo::start(Mode::Honest).await?;
    let store = IpfsStore::new(config(&kubo))?;
    let cid = store.put(Bytes::from_static(b"hello world")).await?;
    assert_eq!(
        cid.to_string(),
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    );
    assert_eq!(stored(&kubo), vec![cid]);
    {
        let state = kubo.state();
        let add = state.requests.first().ok_or("no request")?;
        assert!(add.starts_with("/api/v0/add?"), "{add}");
        for param in ["cid-version=1", "raw-leaves=true", "pin=true"] {
            assert!(add.contains(param), "{add} lacks {param}");
        }
        assert!(state.pins.contains(&cid.to_string()));
    }
    assert_eq!(store.get(&cid).await?, b"hello world");
    assert!(
        kubo.state()
            .requests
            .iter()
            .any(|r| r == &format!("/api/v0/cat?arg={cid}&offline=true")),
        "offline cat"
    );
    store.pin(&cid).await?;
    assert!(
        kubo.state()
            .requests
            .iter()
            .any(|r| r.starts_with("/api/v0/pin/add?arg="))
    );
    // Pinning something the node lacks is Kubo's error, passed on.
    assert!(matches!(
        store.pin(&cid_of(b"absent")).await,
        Err(Error::IpfsStatus { status: 500, .. })
    ));
    Ok(())
}

#[tokio::test]
async fn wrong_bytes_from_cat_are_rejected() -> TestResult {
    let kubo = FakeKubo::start(Mode::WrongBytes).await?;
    let store = IpfsStore::new(config(&kubo))?;
    let cid = store.put(Bytes::from_static(b"the real result")).await?;
    match store.get(&cid).await {
        Err(Error::HashMismatch { expected, actual }) => {
            assert_eq!(*expected, cid);
            assert_eq!(*actual, cid_of(b"the real result!"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn wrong_cid_from_add_is_rejected() -> TestResult {
    let kubo = FakeKubo::start(Mode::WrongCid).await?;
    let store = IpfsStore::new(config(&kubo))?;
    match store.put(Bytes::from_static(b"content")).await {
        Err(Error::CidMismatch { expected, returned }) => {
            assert_eq!(expected, cid_of(b"content"));
            assert_eq!(returned, cid_of(b"something else").to_string());
        }
        other => panic!("expected CidMismatch, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn kubo_errors_carry_its_message() -> TestResult {
    let kubo = FakeKubo::start(Mode::Broken).await?;
    let store = IpfsStore::new(config(&kubo))?;
    match store.put(Bytes::from_static(b"content")).await {
        Err(Error::IpfsStatus {
            status, message, ..
        }) => {
            assert_eq!(status, 500);
            assert_eq!(message, "merkledag: datastore is on fire");
        }
        other => panic!("expected IpfsStatus, got {other:?}"),
    }
    assert!(matches!(
        store.has(&cid_of(b"content")).await,
        Err(Error::IpfsStatus { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn silent_node_times_out() -> TestResult {
    let kubo = FakeKubo::start(Mode::Silent).await?;
    let store = IpfsStore::new(IpfsConfig {
        request_timeout: Duration::from_millis(300),
        ..config(&kubo)
    })?;
    let started = Instant::now();
    match store.get(&cid_of(b"anything")).await {
        Err(Error::Http { source, .. }) => assert!(source.is_timeout(), "{source}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn unreachable_node_is_a_clear_error() -> TestResult {
    // Bind then drop a listener so the port is very likely closed.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?
        .port();
    let store = IpfsStore::new(IpfsConfig {
        url: format!("http://127.0.0.1:{port}"),
        ..IpfsConfig::default()
    })?;
    match store.put(Bytes::from_static(b"x")).await {
        Err(error @ Error::Http { .. }) => {
            assert!(
                error
                    .to_string()
                    .contains(&format!("127.0.0.1:{port}/api/v0/add")),
                "{error}"
            );
        }
        other => panic!("expected an HTTP error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn oversized_cat_output_is_cut_off() -> TestResult {
    let kubo = FakeKubo::start(Mode::Honest).await?;
    let big = vec![5u8; LIMIT * 4];
    let cid = cid_of(&big);
    kubo.state().blocks.insert(cid.to_string(), big);
    let store = IpfsStore::new(config(&kubo))?;
    assert!(
        matches!(store.get(&cid).await, Err(Error::TooLarge { limit, .. }) if limit == LIMIT as u64)
    );
    Ok(())
}

#[tokio::test]
async fn online_reads_of_missing_content_time_out() -> TestResult {
    let kubo = FakeKubo::start(Mode::Honest).await?;
    let store = IpfsStore::new(IpfsConfig {
        offline: false,
        request_timeout: Duration::from_millis(300),
        ..config(&kubo)
    })?;
    match store.get(&cid_of(b"nowhere")).await {
        Err(Error::Http { source, .. }) => assert!(source.is_timeout(), "{source}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let cat = kubo.state().requests.first().cloned().ok_or("no request")?;
    assert!(!cat.contains("offline"), "{cat}");
    Ok(())
}

#[tokio::test]
async fn content_above_kubo_chunk_size_stays_one_raw_block() -> TestResult {
    let kubo = FakeKubo::start(Mode::Honest).await?;
    let store = IpfsStore::new(IpfsConfig {
        max_size: 1024 * 1024,
        ..config(&kubo)
    })?;
    let data = vec![3u8; 300 * 1024];
    let cid = store.put(Bytes::from(data.clone())).await?;
    assert_eq!(cid, cid_of(&data));
    let add = kubo.state().requests.first().cloned().ok_or("no request")?;
    assert!(add.contains("chunker=size-307200"), "{add}");
    assert_eq!(store.get(&cid).await?, data);
    Ok(())
}
