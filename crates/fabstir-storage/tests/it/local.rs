//! The suite over `LocalStore`, and its persistence.

use async_trait::async_trait;
use bytes::Bytes;
use fabstir_storage::{Cid, DEFAULT_MAX_SIZE, Error, LocalStore, ResultStore, cid_of};

use crate::TestResult;
use crate::suite::{self, Harness, LIMIT};

struct Local(LocalStore);

#[async_trait]
impl Harness for Local {
    fn store(&self) -> &dyn ResultStore {
        &self.0
    }

    async fn corrupt(&self, cid: &Cid, bytes: &[u8]) {
        // Damage the file on disk, as a failing disk or a careless operator would.
        tokio::fs::write(self.0.path_of(cid), bytes)
            .await
            .expect("corrupt file");
    }
}

#[tokio::test]
async fn suite() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = LocalStore::open(dir.path()).await?.with_max_size(LIMIT);
    suite::run(&Local(store)).await;
    Ok(())
}

#[tokio::test]
async fn survives_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("results");
    let store = LocalStore::open(&root).await?;
    assert_eq!(store.max_size(), DEFAULT_MAX_SIZE);
    let text = "Once upon a time, there was a little model.".repeat(100);
    let cid = store.put(Bytes::from(text.clone())).await?;
    drop(store);

    let reopened = LocalStore::open(&root).await?;
    assert!(reopened.has(&cid).await?);
    assert_eq!(reopened.get(&cid).await?, text.as_bytes());
    assert_eq!(reopened.put(Bytes::from(text)).await?, cid);
    Ok(())
}

#[tokio::test]
async fn files_above_the_read_limit_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let data = vec![9u8; 2000];
    let cid = LocalStore::open(dir.path())
        .await?
        .put(Bytes::from(data))
        .await?;
    let small = LocalStore::open(dir.path()).await?.with_max_size(100);
    assert!(matches!(
        small.get(&cid).await,
        Err(Error::TooLarge {
            size: 2000,
            limit: 100
        })
    ));
    Ok(())
}

#[tokio::test]
async fn concurrent_puts_of_the_same_content() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = LocalStore::open(dir.path()).await?;
    let data = Bytes::from(vec![42u8; 64 * 1024]);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, data) = (store.clone(), data.clone());
            tokio::spawn(async move { store.put(data).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await??, cid_of(&data));
    }
    assert_eq!(store.get(&cid_of(&data)).await?, data.to_vec());
    Ok(())
}

#[tokio::test]
async fn unreadable_root_is_an_io_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory")?;
    match LocalStore::open(file.join("store")).await {
        Err(Error::Io { path, .. }) => assert!(path.starts_with(&file)),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    Ok(())
}
