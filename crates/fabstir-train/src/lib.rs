//! Trains the project's own small model: a character-level Llama 2 on tinyshakespeare, written
//! in llama2.c's checkpoint and tokenizer formats so that `fabstir-inference`'s embedded engine
//! loads it like any tinyllamas checkpoint.
//!
//! [`Vocab`] is the character vocabulary (ids 0, 1 and 2 are `<unk>`, `<s>` and `</s>` as in
//! llama2.c, then one piece per character of the corpus, sorted). [`Model`] is the Llama 2
//! architecture of llama2.c's `run.c` (RMSNorm, interleaved RoPE, grouped-query attention,
//! SwiGLU, a classifier shared with the embedding) in candle, with its weights as [`candle_core::Var`]s
//! in llama2.c's layout. [`Trainer`] trains it with AdamW on random windows of the corpus, each
//! starting with BOS, and measures the validation loss on the held-out end of the corpus.
//!
//! Everything is seeded: the same corpus, configuration and seed give the same model.

mod error;
mod model;
mod rng;
mod train;
mod vocab;

pub use error::{Error, Result};
pub use model::{Model, ModelConfig, llama_hidden_dim};
pub use rng::Rng;
pub use train::{Batch, Progress, TrainConfig, Trainer};
pub use vocab::{BOS, EOS, UNK, Vocab};
