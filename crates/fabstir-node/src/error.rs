//! The error type of `fabstir-node`.

/// Everything that can stop a node from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid or incomplete.
    #[error("configuration: {0}")]
    Config(String),
    /// The host key is missing or malformed (the key itself is never included).
    #[error("host key: {0}")]
    Key(String),
    /// A chain call failed.
    #[error(transparent)]
    Contracts(#[from] fabstir_contracts::Error),
    /// The network layer failed.
    #[error(transparent)]
    P2p(#[from] fabstir_p2p::Error),
    /// Inference failed.
    #[error(transparent)]
    Inference(#[from] fabstir_inference::Error),
    /// Result storage failed.
    #[error(transparent)]
    Storage(#[from] fabstir_storage::Error),
    /// A domain value was invalid.
    #[error(transparent)]
    Core(#[from] fabstir_core::Error),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
