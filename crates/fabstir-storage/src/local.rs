//! A result store on the local file system, the embedded default of a host.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;
use tokio::io::AsyncWriteExt;

use crate::store::check_size;
use crate::{DEFAULT_MAX_SIZE, Error, Result, ResultStore, check_cid, cid_of, verify};

/// Prefix of temporary files; never a valid CID string, so never mistaken for content.
const TEMP_PREFIX: &str = ".tmp-";

/// Counter making temporary file names unique within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A [`ResultStore`] keeping one file per result under a root directory.
///
/// A result with CID `bafkrei...xyz` lives at `<root>/xy/bafkrei...xyz`: the shard directory
/// is the two characters before the last one of the CID string, like Kubo's flatfs
/// `next-to-last/2` (every CID starts with the same `bafkrei`, and the last character carries
/// few bits). Writes go to a temporary file in the shard directory which is synced and then
/// renamed into place, so a crash never leaves a partial result under a CID name. Reads are
/// verified against the CID.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    max_size: usize,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, with the default size limit
    /// ([`DEFAULT_MAX_SIZE`]).
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|source| io_error(&root, source))?;
        Ok(Self {
            root,
            max_size: DEFAULT_MAX_SIZE,
        })
    }

    /// Sets the largest result, in bytes, this store accepts and returns.
    #[must_use]
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// The root directory of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The largest result, in bytes, this store accepts and returns.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The path at which the content of `cid` is (or would be) stored.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        let name = cid.to_string();
        let shard = shard_of(&name);
        self.root.join(shard).join(name)
    }

    /// Reads and verifies the file at `path`; `Ok(None)` if it does not exist.
    async fn read_verified(&self, cid: &Cid, path: &Path) -> Result<Option<Vec<u8>>> {
        let metadata = match tokio::fs::metadata(path).await {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(path, source)),
        };
        let size = usize::try_from(metadata.len()).unwrap_or(usize::MAX);
        check_size(size, self.max_size)?;
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error(path, source)),
        };
        // The file may have grown between the metadata call and the read.
        check_size(bytes.len(), self.max_size)?;
        verify(cid, &bytes)?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` to `path` atomically: temporary file, fsync, rename, fsync directory.
    async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| io_error(dir, source))?;
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_and_rename(&temp, path, bytes).await;
        if result.is_err() {
            // Best effort: a leftover temporary file is harmless but wastes space.
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result?;
        sync_dir(dir).await
    }
}

#[async_trait]
impl ResultStore for LocalStore {
    async fn put(&self, bytes: Bytes) -> Result<Cid> {
        check_size(bytes.len(), self.max_size)?;
        let cid = cid_of(&bytes);
        let path = self.path_of(&cid);
        match self.read_verified(&cid, &path).await {
            // Already stored and intact: puts are idempotent.
            Ok(Some(_)) => return Ok(cid),
            Ok(None) => {}
            // A corrupt or unreadable copy is replaced by the good bytes we hold.
            Err(e) => tracing::warn!(%cid, error = %e, "replacing damaged stored result"),
        }
        self.write_atomic(&path, &bytes).await?;
        tracing::debug!(%cid, size = bytes.len(), "stored result");
        Ok(cid)
    }

    async fn get(&self, cid: &Cid) -> Result<Vec<u8>> {
        check_cid(cid)?;
        let path = self.path_of(cid);
        self.read_verified(cid, &path)
            .await?
            .ok_or(Error::NotFound(*cid))
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        check_cid(cid)?;
        let path = self.path_of(cid);
        tokio::fs::try_exists(&path)
            .await
            .map_err(|source| io_error(&path, source))
    }
}

/// The shard directory of a CID string: the two characters before the last one.
fn shard_of(name: &str) -> &str {
    let len = name.len();
    if len < 3 {
        return "__";
    }
    name.get(len - 3..len - 1).unwrap_or("__")
}

async fn write_and_rename(temp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .await
        .map_err(|source| io_error(temp, source))?;
    file.write_all(bytes)
        .await
        .map_err(|source| io_error(temp, source))?;
    file.sync_all()
        .await
        .map_err(|source| io_error(temp, source))?;
    drop(file);
    tokio::fs::rename(temp, path)
        .await
        .map_err(|source| io_error(path, source))
}

/// Syncs a directory so a rename into it survives a crash (a no-op where unsupported).
async fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let handle = tokio::fs::File::open(dir)
            .await
            .map_err(|source| io_error(dir, source))?;
        handle
            .sync_all()
            .await
            .map_err(|source| io_error(dir, source))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_is_next_to_last_two() {
        assert_eq!(
            shard_of("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
            "yk"
        );
        assert_eq!(shard_of("ab"), "__");
    }

    #[tokio::test]
    async fn layout_and_no_temp_files_left() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_error(Path::new("tempdir"), e))?;
        let store = LocalStore::open(dir.path()).await?;
        let cid = store.put(Bytes::from_static(b"hello world")).await?;
        let path = store.path_of(&cid);
        assert_eq!(
            path,
            dir.path()
                .join("n5")
                .join("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e")
        );
        assert_eq!(
            std::fs::read(&path).ok().as_deref(),
            Some(&b"hello world"[..])
        );
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("n5"))
            .map_err(|e| io_error(dir.path(), e))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries.len(), 1, "only the result file: {entries:?}");
        Ok(())
    }

    #[tokio::test]
    async fn put_repairs_a_corrupt_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| io_error(Path::new("tempdir"), e))?;
        let store = LocalStore::open(dir.path()).await?;
        let cid = store.put(Bytes::from_static(b"result")).await?;
        std::fs::write(store.path_of(&cid), b"garbage").map_err(|e| io_error(dir.path(), e))?;
        assert!(matches!(
            store.get(&cid).await,
            Err(Error::HashMismatch { .. })
        ));
        assert_eq!(store.put(Bytes::from_static(b"result")).await?, cid);
        assert_eq!(store.get(&cid).await?, b"result");
        Ok(())
    }
}
