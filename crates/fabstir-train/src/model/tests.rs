use super::*;

fn tiny() -> ModelConfig {
    ModelConfig {
        dim: 16,
        hidden_dim: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        vocab_size: 11,
        seq_len: 8,
    }
}

#[test]
fn hidden_dim_follows_llama() {
    assert_eq!(llama_hidden_dim(64), 192);
    assert_eq!(llama_hidden_dim(128), 352);
    assert_eq!(llama_hidden_dim(288), 768);
}

#[test]
fn rejects_inconsistent_configs() {
    assert!(tiny().validate().is_ok());
    for bad in [
        ModelConfig { dim: 18, ..tiny() },
        ModelConfig {
            n_kv_heads: 3,
            ..tiny()
        },
        ModelConfig {
            n_heads: 8,
            n_kv_heads: 8,
            dim: 8,
            ..tiny()
        },
        ModelConfig {
            seq_len: 0,
            ..tiny()
        },
    ] {
        assert!(Model::new(bad, 1).is_err(), "{bad:?}");
    }
}

#[test]
fn checkpoint_round_trips_and_has_llama2c_size() {
    let model = Model::new(tiny(), 3).unwrap();
    let bytes = model.to_llama2c_bytes().unwrap();
    let c = tiny();
    let floats = c.parameter_count() + c.seq_len * c.head_size();
    assert_eq!(bytes.len(), HEADER_BYTES + 4 * floats);
    assert_eq!(&bytes[20..24], &11i32.to_le_bytes());
    let back = Model::from_llama2c_bytes(&bytes).unwrap();
    assert_eq!(back.to_llama2c_bytes().unwrap(), bytes);
    assert!(Model::from_llama2c_bytes(&bytes[..bytes.len() - 4]).is_err());
}

#[test]
fn later_tokens_do_not_change_earlier_logits() {
    let model = Model::new(tiny(), 5).unwrap();
    let short = model.logits(&[1, 4, 5]).unwrap();
    let long = model.logits(&[1, 4, 5, 9, 10]).unwrap();
    assert_eq!(long.len(), 5);
    for (a, b) in short.iter().zip(&long) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    assert!(model.logits(&[11]).is_err());
    assert!(model.logits(&[1; 9]).is_err());
}
