//! One behavioural suite run over every `ResultStore` implementation.

use async_trait::async_trait;
use bytes::Bytes;
use fabstir_storage::{Cid, Error, RAW_CODEC, ResultStore, cid_of};

/// The size limit every store under test is configured with.
pub(crate) const LIMIT: usize = 1024;

/// A store under test plus the means to damage what it holds.
#[async_trait]
pub(crate) trait Harness: Send + Sync {
    /// The store, configured with a size limit of [`LIMIT`] bytes.
    fn store(&self) -> &dyn ResultStore;
    /// Replaces the stored content of `cid` with `bytes`, bypassing the store's checks.
    async fn corrupt(&self, cid: &Cid, bytes: &[u8]);
}

/// Runs every check of the suite.
pub(crate) async fn run(harness: &dyn Harness) {
    round_trip(harness.store()).await;
    idempotent_put(harness.store()).await;
    empty_content(harness.store()).await;
    missing(harness.store()).await;
    oversized(harness.store()).await;
    unsupported_cids(harness.store()).await;
    corrupted(harness).await;
}

async fn round_trip(store: &dyn ResultStore) {
    let data = b"The quick brown fox jumps over the lazy dog".to_vec();
    let cid = store.put(Bytes::from(data.clone())).await.expect("put");
    assert_eq!(cid, cid_of(&data));
    assert!(store.has(&cid).await.expect("has"));
    assert_eq!(store.get(&cid).await.expect("get"), data);
    // Exactly at the limit is accepted.
    let full = vec![7u8; LIMIT];
    let cid = store
        .put(Bytes::from(full.clone()))
        .await
        .expect("put at limit");
    assert_eq!(store.get(&cid).await.expect("get at limit"), full);
}

async fn idempotent_put(store: &dyn ResultStore) {
    let first = store.put(Bytes::from_static(b"same")).await.expect("put");
    let second = store
        .put(Bytes::from_static(b"same"))
        .await
        .expect("put again");
    assert_eq!(first, second);
    assert_eq!(store.get(&first).await.expect("get"), b"same");
}

async fn empty_content(store: &dyn ResultStore) {
    let cid = store.put(Bytes::new()).await.expect("put empty");
    assert_eq!(
        cid.to_string(),
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );
    assert!(store.get(&cid).await.expect("get empty").is_empty());
}

async fn missing(store: &dyn ResultStore) {
    let cid = cid_of(b"never stored");
    assert!(!store.has(&cid).await.expect("has"));
    match store.get(&cid).await {
        Err(Error::NotFound(missing)) => assert_eq!(missing, cid),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

async fn oversized(store: &dyn ResultStore) {
    let big = vec![1u8; LIMIT + 1];
    match store.put(Bytes::from(big.clone())).await {
        Err(Error::TooLarge { size, limit }) => {
            assert_eq!(size, (LIMIT + 1) as u64);
            assert_eq!(limit, LIMIT as u64);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(!store.has(&cid_of(&big)).await.expect("has"));
}

async fn unsupported_cids(store: &dyn ResultStore) {
    let raw = cid_of(b"x");
    let dag_pb = Cid::new_v1(0x70, *raw.hash());
    let v0 = Cid::new_v0(*raw.hash()).expect("v0");
    let identity = Cid::new_v1(
        RAW_CODEC,
        multihash::Multihash::<64>::wrap(0, b"x").expect("identity"),
    );
    for cid in [dag_pb, v0, identity] {
        assert!(
            matches!(store.get(&cid).await, Err(Error::UnsupportedCid { .. })),
            "get {cid}"
        );
        assert!(
            matches!(store.has(&cid).await, Err(Error::UnsupportedCid { .. })),
            "has {cid}"
        );
    }
}

async fn corrupted(harness: &dyn Harness) {
    let store = harness.store();
    let cid = store
        .put(Bytes::from_static(b"precious result"))
        .await
        .expect("put");
    harness.corrupt(&cid, b"precious resulT").await;
    match store.get(&cid).await {
        Err(Error::HashMismatch { expected, actual }) => {
            assert_eq!(*expected, cid);
            assert_eq!(*actual, cid_of(b"precious resulT"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    // Truncated content is a mismatch too.
    harness.corrupt(&cid, b"").await;
    assert!(matches!(
        store.get(&cid).await,
        Err(Error::HashMismatch { .. })
    ));
}
