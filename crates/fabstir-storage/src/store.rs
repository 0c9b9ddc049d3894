//! The storage trait every backend implements.

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::Result;

/// Default limit on the size of one stored result: 16 MiB.
pub const DEFAULT_MAX_SIZE: usize = 16 * 1024 * 1024;

/// A content-addressed store of job results.
///
/// Keys are CIDv1 with the raw codec and a sha2-256 multihash ([`crate::cid_of`]); any other
/// CID is rejected with [`crate::Error::UnsupportedCid`]. Every read is verified against the
/// CID, so callers never see bytes that do not match what they asked for.
#[async_trait]
pub trait ResultStore: Send + Sync {
    /// Stores `bytes` and returns their CID. Storing the same bytes twice is not an error and
    /// returns the same CID. Fails with [`crate::Error::TooLarge`] above the store's limit.
    async fn put(&self, bytes: Bytes) -> Result<Cid>;

    /// Returns the bytes stored under `cid`, after checking they hash to `cid`.
    ///
    /// Fails with [`crate::Error::NotFound`] if nothing is stored and with
    /// [`crate::Error::HashMismatch`] if what is stored is corrupt.
    async fn get(&self, cid: &Cid) -> Result<Vec<u8>>;

    /// Whether content is stored under `cid`. This does not read or verify the content.
    async fn has(&self, cid: &Cid) -> Result<bool>;
}

/// Checks a size against a limit.
pub(crate) fn check_size(size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(crate::Error::TooLarge {
            size: size as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}
