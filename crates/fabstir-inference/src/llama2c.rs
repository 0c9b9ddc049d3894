//! Andrej Karpathy's llama2.c formats and its Llama 2 forward pass, in plain safe Rust.
//!
//! [`Checkpoint`] reads a llama2.c model (7 little-endian `i32` header fields, then `f32`
//! weights), [`Tokenizer`] reads a llama2.c `tokenizer.bin` and encodes and decodes like
//! `run.c`, [`Sampler`] picks the next token as `run.c` does (argmax, or temperature and top-p
//! sampling from its xorshift generator) and [`Session`] runs the forward pass with a KV cache.
//! Given the same files they reproduce `run.c`'s greedy token ids exactly.

mod checkpoint;
mod forward;
mod sampler;
mod tokenizer;

pub use checkpoint::{Checkpoint, Config};
pub use forward::Session;
pub use sampler::Sampler;
pub use tokenizer::Tokenizer;

/// The beginning-of-sequence token: generation starts from it and stops when the model
/// emits it again.
pub const BOS: u32 = 1;
/// The end-of-sequence token.
pub const EOS: u32 = 2;
