//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong while training, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, bad dtype, ...).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model's hyperparameters do not fit together.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// The training configuration is unusable.
    #[error("invalid training config: {0}")]
    InvalidTraining(String),
    /// The corpus is too short to train or validate on.
    #[error("corpus too small: {chars} characters, need at least {needed}")]
    CorpusTooSmall {
        /// Characters in the corpus (or in its part that was too short).
        chars: usize,
        /// Characters needed.
        needed: usize,
    },
    /// A character that the vocabulary cannot spell.
    #[error("character {ch:?} is not in the vocabulary")]
    UnknownCharacter {
        /// The character.
        ch: char,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A llama2.c checkpoint that this crate cannot read.
    #[error("invalid checkpoint: {0}")]
    InvalidCheckpoint(String),
    /// A llama2.c tokenizer file that is not a character vocabulary of this crate's shape.
    #[error("invalid tokenizer file: {0}")]
    InvalidTokenizer(String),
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
