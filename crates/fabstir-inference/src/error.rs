//! The crate's error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why loading a model or generating from it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model or tokenizer file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The checkpoint's header holds values no llama2.c model can have.
    #[error("invalid llama2.c checkpoint header: {0}")]
    InvalidCheckpointHeader(String),
    /// The checkpoint's length does not match what its header announces.
    #[error(
        "llama2.c checkpoint should be {expected} bytes for its header, but is {actual} bytes \
         (truncated, or not a llama2.c checkpoint)"
    )]
    CheckpointSize {
        /// Bytes the header implies.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// The tokenizer file ends in the middle of a field.
    #[error("llama2.c tokenizer truncated at byte {offset}: {needed} more bytes needed")]
    TruncatedTokenizer {
        /// Where the incomplete field starts.
        offset: usize,
        /// How many bytes the field needs.
        needed: usize,
    },
    /// The tokenizer file holds values no llama2.c tokenizer can have.
    #[error("invalid llama2.c tokenizer: {0}")]
    InvalidTokenizer(String),
    /// The tokenizer and the model disagree on the vocabulary size.
    #[error("tokenizer has {tokenizer} pieces but the model's vocabulary has {model}")]
    VocabMismatch {
        /// Pieces in the tokenizer.
        tokenizer: usize,
        /// Vocabulary size in the model's header.
        model: usize,
    },
    /// The text holds a character the vocabulary cannot represent (no piece, no byte fallback).
    #[error("character {ch:?} is not in the vocabulary and it has no byte tokens")]
    UnknownCharacter {
        /// The character.
        ch: char,
    },
    /// The model has no tokenizer and the prompt is not a list of token ids.
    #[error(
        "model has no tokenizer: the prompt must be empty or whitespace-separated token ids, \
         got {prompt:?}"
    )]
    PromptNotTokenIds {
        /// The start of the prompt.
        prompt: String,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The prompt does not fit in the model's context.
    #[error("prompt is {tokens} tokens but the model's context is {context_length}")]
    PromptTooLong {
        /// Tokens in the prompt, BOS included.
        tokens: usize,
        /// The model's context length.
        context_length: usize,
    },
    /// A request parameter is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// `generate` was called outside a tokio runtime.
    #[error("generation needs a tokio runtime: {0}")]
    NoRuntime(String),
    /// An HTTP request to an inference server failed.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// An inference server answered with an error status.
    #[error("{url} answered {status}: {body}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// An inference server took too long.
    #[error("{url} sent nothing for {after:?} while waiting for {waiting_for}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// What was awaited.
        waiting_for: &'static str,
        /// How long was waited.
        after: std::time::Duration,
    },
    /// An inference server sent something that is not a valid streamed completion.
    #[error("bad response from the inference server: {0}")]
    BadServerResponse(String),
    /// The producer of a stream stopped without saying why (it panicked or was dropped).
    #[error("the inference backend stopped before finishing the stream")]
    BackendStopped,
}
