//! The exported files in fabstir-inference's embedded engine.

use std::ops::ControlFlow;

use fabstir_inference::llama2c::{Checkpoint, Session, Tokenizer};
use fabstir_inference::{EmbeddedEngine, EngineConfig, GenerateRequest};
use fabstir_train::{BOS, Model, ModelConfig, Rng, Vocab};

use crate::{committed_model, corpus};

/// The engine's logits after each of `tokens`, one position at a time with its KV cache.
fn engine_logits(
    checkpoint: &Checkpoint,
    tokens: &[u32],
) -> fabstir_inference::Result<Vec<Vec<f32>>> {
    let mut session = Session::new(checkpoint);
    tokens
        .iter()
        .enumerate()
        .map(|(pos, &token)| Ok(session.forward(token, pos)?.to_vec()))
        .collect()
}

/// Asserts two sets of logits agree within `tol` relative to their size; returns the largest
/// logit seen, so a test can check the comparison was not between near-zero values.
fn assert_close(engine: &[Vec<f32>], candle: &[Vec<f32>], tol: f32) -> f32 {
    assert_eq!(engine.len(), candle.len());
    let mut largest = 0f32;
    for (pos, (e, c)) in engine.iter().zip(candle).enumerate() {
        assert_eq!(e.len(), c.len());
        for (i, (&a, &b)) in e.iter().zip(c).enumerate() {
            largest = largest.max(a.abs());
            assert!(
                (a - b).abs() <= tol * (1.0 + a.abs()),
                "position {pos}, token {i}: engine {a}, candle {b}"
            );
        }
    }
    largest
}

#[test]
fn engine_logits_equal_candle_logits_for_the_committed_model() {
    let dir = committed_model();
    let model = Model::load(dir.join("model.bin")).unwrap();
    let vocab = Vocab::load(dir.join("tokenizer.bin")).unwrap();
    let checkpoint = Checkpoint::load(dir.join("model.bin")).unwrap();
    let mut tokens = vec![BOS];
    tokens.extend(
        vocab
            .encode("ROMEO:\nWhat light through yonder window breaks?")
            .unwrap(),
    );
    let largest = assert_close(
        &engine_logits(&checkpoint, &tokens).unwrap(),
        &model.logits(&tokens).unwrap(),
        1e-3,
    );
    assert!(largest > 1.0, "logits are suspiciously small: {largest}");
}

#[test]
fn engine_logits_equal_candle_logits_with_grouped_kv_heads() {
    let config = ModelConfig {
        dim: 32,
        hidden_dim: 48,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 23,
        seq_len: 16,
    };
    // Large random weights, so every layer changes the logits visibly; the RoPE tables at
    // the end of the file stay as written.
    let mut bytes = Model::new(config, 1).unwrap().to_llama2c_bytes().unwrap();
    let rope_bytes = 4 * config.seq_len * config.head_size();
    let end = bytes.len() - rope_bytes;
    let mut rng = Rng::new(99);
    for chunk in bytes[28..end].chunks_exact_mut(4) {
        let v = (rng.uniform() as f32 - 0.5) * 2.0;
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    let model = Model::from_llama2c_bytes(&bytes).unwrap();
    assert_eq!(
        model.to_llama2c_bytes().unwrap(),
        bytes,
        "reader and writer agree"
    );
    let checkpoint = Checkpoint::from_bytes(&bytes).unwrap();
    let tokens = [1, 5, 9, 22, 3, 3, 17, 8, 0, 12, 2, 6, 19, 4, 11, 7];
    let largest = assert_close(
        &engine_logits(&checkpoint, &tokens).unwrap(),
        &model.logits(&tokens).unwrap(),
        1e-4,
    );
    assert!(largest > 1.0, "logits are suspiciously small: {largest}");
}

/// Generates `max_tokens` from BOS with the engine.
fn generate(
    engine: &EmbeddedEngine,
    temperature: f32,
    max_tokens: u32,
) -> fabstir_inference::Result<(String, u32)> {
    let request = GenerateRequest {
        prompt: String::new(),
        max_tokens,
        temperature,
        top_p: 1.0,
        seed: 42,
        ..GenerateRequest::default()
    };
    let mut text = String::new();
    let done = engine.generate_blocking(&request, |token| {
        text.push_str(&token.text);
        ControlFlow::Continue(())
    })?;
    Ok((text, done.usage.completion_tokens))
}

#[test]
fn committed_model_generates_printable_text_in_the_engine() {
    let dir = committed_model();
    let engine = EmbeddedEngine::load(&EngineConfig {
        name: "shakespeare".into(),
        checkpoint: dir.join("model.bin"),
        tokenizer: Some(dir.join("tokenizer.bin")),
        channel_capacity: 8,
    })
    .unwrap();
    for temperature in [0.0, 0.8] {
        let (text, tokens) = generate(&engine, temperature, 200).unwrap();
        assert_eq!(tokens, 200, "the model stopped early: {text:?}");
        // One character per token, but a space right after BOS decodes to nothing.
        let chars = text.chars().count();
        assert!((199..=200).contains(&chars), "{chars} characters: {text:?}");
        assert!(
            text.chars().all(|c| c == '\n' || (' '..='~').contains(&c)),
            "unprintable text: {text:?}"
        );
        assert!(
            text.split_whitespace().count() >= 20,
            "not made of words: {text:?}"
        );
    }
}

#[test]
fn tokenizer_file_round_trips_through_the_engine() {
    let text = corpus();
    let vocab = Vocab::from_text(&text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.bin");
    vocab.save(&path).unwrap();
    assert_eq!(Vocab::load(&path).unwrap(), vocab);

    let engine = Tokenizer::load(&path).unwrap();
    assert_eq!(engine.vocab_size(), vocab.len());
    assert_eq!(engine.piece(1), Some(&b"<s>"[..]));
    for (i, c) in vocab.chars().iter().enumerate() {
        assert_eq!(engine.piece(i as u32 + 3), Some(c.to_string().as_bytes()));
    }
    let sample = "First Citizen:\nBefore we proceed any further, hear me speak.";
    let ids = vocab.encode(sample).unwrap();
    // The engine adds llama2.c's dummy-prefix space after BOS; a piece after BOS loses its
    // leading space when decoded, so the text comes back unchanged.
    let mut expected = vec![BOS];
    expected.extend(vocab.encode(" ").unwrap());
    expected.extend(&ids);
    assert_eq!(engine.encode(sample, true, false).unwrap(), expected);
    assert_eq!(engine.decode_all(&expected).unwrap(), sample);
    assert_eq!(vocab.decode(&expected).unwrap(), format!(" {sample}"));

    // The committed tokenizer is this corpus's vocabulary.
    let committed = std::fs::read(committed_model().join("tokenizer.bin")).unwrap();
    assert_eq!(committed, vocab.to_tokenizer_bytes());
}
