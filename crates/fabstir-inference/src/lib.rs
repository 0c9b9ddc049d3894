//! Inference backends for Fabstir hosts: an embedded CPU engine for llama2.c checkpoints
//! and a client for OpenAI-compatible servers, both behind one streaming trait.
//!
//! A host serves each model through an [`InferenceBackend`]. [`InferenceBackend::generate`]
//! returns a [`TokenStream`] of [`GeneratedToken`]s; when it ends, [`TokenStream::usage`] and
//! [`TokenStream::finish_reason`] say how many tokens were used and why generation stopped.
//! Dropping the stream, or cancelling the request's [`CancellationToken`], stops generation.
//!
//! [`EmbeddedEngine`] runs llama2.c checkpoints (see [`llama2c`]) in plain Rust on the CPU:
//! generation runs on tokio's blocking pool and feeds a bounded channel, so a slow reader
//! slows the model down rather than filling memory.
//!
//! [`OpenAiBackend`] streams from any server speaking OpenAI's `/v1/completions` or
//! `/v1/chat/completions` with server-sent events.

mod backend;
mod embedded;
mod error;
pub mod llama2c;
mod openai;
mod stream;
mod throttled;

pub use backend::{
    FinishReason, GenerateRequest, GeneratedToken, InferenceBackend, ModelInfo, Usage,
};
pub use embedded::{Completion, EmbeddedEngine, EngineConfig};
pub use error::{Error, Result};
pub use openai::{OpenAiApi, OpenAiBackend, OpenAiConfig};
pub use stream::{StreamClosed, TokenSink, TokenStream};
pub use throttled::Throttled;
pub use tokio_util::sync::CancellationToken;
