//! Truncated, garbage and mismatched files are errors, never panics.

use fabstir_inference::llama2c::{Checkpoint, Tokenizer};
use fabstir_inference::{EmbeddedEngine, EngineConfig, Error};

use crate::model_file;

fn garbage(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

#[test]
fn truncated_or_garbage_checkpoints_are_rejected() {
    let bytes = std::fs::read(model_file("stories260K.bin")).unwrap();
    let model = Checkpoint::from_bytes(&bytes).unwrap();
    let c = model.config();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.n_kv_heads,
            c.vocab_size,
            c.seq_len
        ),
        (64, 172, 5, 8, 4, 512, 512)
    );
    assert!(c.shared_classifier);
    for len in [
        0,
        10,
        28,
        1000,
        bytes.len() / 2,
        bytes.len() - 4,
        bytes.len() - 1,
    ] {
        let err = Checkpoint::from_bytes(&bytes[..len]).unwrap_err();
        assert!(matches!(err, Error::CheckpointSize { .. }), "{len}: {err}");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    assert!(Checkpoint::from_bytes(&longer).is_err());
    for seed in 1..50 {
        assert!(Checkpoint::from_bytes(&garbage(bytes.len(), seed)).is_err());
    }
    // A classifier flag flipped makes the file too short for its header.
    let mut separate = bytes.clone();
    separate[20..24].copy_from_slice(&(-512i32).to_le_bytes());
    assert!(matches!(
        Checkpoint::from_bytes(&separate),
        Err(Error::CheckpointSize { .. })
    ));
}

#[test]
fn truncated_or_garbage_tokenizers_are_rejected() {
    let bytes = std::fs::read(model_file("tokenizer.bin")).unwrap();
    assert_eq!(Tokenizer::from_bytes(&bytes).unwrap().vocab_size(), 32000);
    for len in [0, 2, 5, 9, bytes.len() - 1] {
        let err = Tokenizer::from_bytes(&bytes[..len]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TruncatedTokenizer { .. } | Error::InvalidTokenizer(_)
            ),
            "{len}: {err}"
        );
    }
    // The format has no piece count: a cut between two pieces leaves a shorter vocabulary,
    // which loading it with its model rejects as a vocabulary mismatch.
    for len in (100..bytes.len()).step_by(997) {
        match Tokenizer::from_bytes(&bytes[..len]) {
            Ok(t) => assert!(t.vocab_size() < 32000, "{len}"),
            Err(err) => assert!(
                matches!(err, Error::TruncatedTokenizer { .. }),
                "{len}: {err}"
            ),
        }
    }
    for seed in 1..50 {
        assert!(Tokenizer::from_bytes(&garbage(4096, seed)).is_err());
    }
}

#[test]
fn missing_files_and_mismatched_vocabularies_are_errors() {
    let err =
        Checkpoint::load(model_file("README.md").with_file_name("no-such-model.bin")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let err = EmbeddedEngine::load(&EngineConfig {
        checkpoint: model_file("stories260K.bin"),
        tokenizer: Some(model_file("tokenizer.bin")),
        ..EngineConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::VocabMismatch {
                tokenizer: 32000,
                model: 512
            }
        ),
        "{err}"
    );
}
