//! The crate's error type.

use std::path::PathBuf;

use cid::Cid;

/// Everything that can go wrong while storing or fetching a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes read back do not hash to the CID they were asked for.
    #[error("content hash mismatch: expected {expected}, but the data hashes to {actual}")]
    HashMismatch {
        /// The CID that was requested (boxed to keep `Error` small).
        expected: Box<Cid>,
        /// The CID of the bytes actually found.
        actual: Box<Cid>,
    },

    /// The CID is well formed but not a CIDv1 with the raw codec and a sha2-256 multihash.
    #[error(
        "unsupported CID {cid}: only CIDv1 with the raw codec (0x55) and a sha2-256 multihash \
         are accepted, this one is {reason}"
    )]
    UnsupportedCid {
        /// The offending CID, as a string.
        cid: String,
        /// What about it is unsupported.
        reason: String,
    },

    /// A string or byte string is not a CID at all.
    #[error("invalid CID {input:?}: {source}")]
    InvalidCid {
        /// The input that failed to parse (lossily decoded if it was not UTF-8).
        input: String,
        /// Why parsing failed.
        #[source]
        source: cid::Error,
    },

    /// The store does not hold content for this CID.
    #[error("no content stored for {0}")]
    NotFound(Cid),

    /// The content exceeds the store's size limit.
    #[error("content too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size of the content (for streamed reads, at least this many bytes).
        size: u64,
        /// The configured limit.
        limit: u64,
    },

    /// A file-system operation failed.
    #[error("I/O error at {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The IPFS base URL cannot be used.
    #[error("invalid IPFS API URL {url:?}: {reason}")]
    InvalidUrl {
        /// The configured URL.
        url: String,
        /// Why it is unusable.
        reason: String,
    },

    /// An HTTP request to the IPFS node failed (connection refused, timeout, broken body...).
    #[error("IPFS request to {url} failed: {source}")]
    Http {
        /// The request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The IPFS node answered with an error status.
    #[error("IPFS node answered {status} to {url}: {message}")]
    IpfsStatus {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// Kubo's error message (or the start of the body).
        message: String,
    },

    /// The IPFS node answered with something this client cannot understand.
    #[error("unexpected answer from IPFS node at {url}: {reason}")]
    IpfsResponse {
        /// The request URL.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },

    /// The IPFS node stored the content under a different CID than the one computed locally
    /// (for instance because it chunked the content into a DAG).
    #[error("IPFS node stored the content as {returned}, but its CID is {expected}")]
    CidMismatch {
        /// The locally computed CID.
        expected: Cid,
        /// The CID the node reported.
        returned: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
