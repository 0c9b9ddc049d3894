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

/// Reads a whole model or tokenizer file, naming it in the error.
fn read_file(path: &std::path::Path) -> crate::Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| crate::Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Checks the attention shape run.c and the engine need: `dim` a multiple of `n_heads`,
/// `n_heads` a multiple of `n_kv_heads`, and an even head size (RoPE rotates pairs). The
/// error says which rule failed; fields are assumed non-zero.
pub fn check_attention_shape(
    dim: usize,
    n_heads: usize,
    n_kv_heads: usize,
) -> std::result::Result<(), String> {
    if !dim.is_multiple_of(n_heads) {
        return Err(format!("dim {dim} is not a multiple of n_heads {n_heads}"));
    }
    if n_kv_heads > n_heads || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(format!(
            "n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}"
        ));
    }
    let head_size = dim / n_heads;
    if !head_size.is_multiple_of(2) {
        return Err(format!("head size {head_size} is odd; RoPE rotates pairs"));
    }
    Ok(())
}

/// The beginning-of-sequence token: generation starts from it and stops when the model
/// emits it again.
pub const BOS: u32 = 1;
/// The end-of-sequence token.
pub const EOS: u32 = 2;
