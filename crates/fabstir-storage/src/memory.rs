//! An in-memory result store for unit tests of upper layers.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::store::check_size;
use crate::{DEFAULT_MAX_SIZE, Error, Result, ResultStore, check_cid, cid_of, verify};

/// A [`ResultStore`] holding results in memory; it behaves like the real stores, verification
/// and size limit included.
#[derive(Debug)]
pub struct MemoryStore {
    entries: Mutex<HashMap<Cid, Bytes>>,
    max_size: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with the default size limit ([`DEFAULT_MAX_SIZE`]).
    pub fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    /// Sets the largest result, in bytes, this store accepts and returns.
    #[must_use]
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Number of stored results.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store holds no result.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Replaces what is stored under `cid` with arbitrary bytes, without checking them, to
    /// simulate corruption in tests.
    pub fn corrupt(&self, cid: &Cid, bytes: impl Into<Bytes>) {
        self.lock().insert(*cid, bytes.into());
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Cid, Bytes>> {
        // The map is never left half-updated, so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    async fn put(&self, bytes: Bytes) -> Result<Cid> {
        check_size(bytes.len(), self.max_size)?;
        let cid = cid_of(&bytes);
        self.lock().insert(cid, bytes);
        Ok(cid)
    }

    async fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        check_cid(cid)?;
        let bytes = self.lock().get(cid).cloned().ok_or(Error::NotFound(*cid))?;
        check_size(bytes.len(), self.max_size)?;
        verify(cid, &bytes)?;
        Ok(bytes.to_vec())
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        check_cid(cid)?;
        Ok(self.lock().contains_key(cid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_corruption() -> Result<()> {
        let store = MemoryStore::new().with_max_size(8);
        assert!(store.is_empty());
        let cid = store.put(Bytes::from_static(b"abc")).await?;
        assert_eq!(store.len(), 1);
        assert_eq!(store.get(&cid).await?, b"abc");
        store.corrupt(&cid, &b"abd"[..]);
        assert!(matches!(
            store.get(&cid).await,
            Err(Error::HashMismatch { .. })
        ));
        assert!(matches!(
            store.put(Bytes::from_static(b"123456789")).await,
            Err(Error::TooLarge { size: 9, limit: 8 })
        ));
        Ok(())
    }
}
