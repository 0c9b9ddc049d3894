//! Integration tests of fabstir-train: training lowers the loss, and fabstir-inference's
//! embedded engine reads the exported files and computes the same logits as the trained model.

mod engine;
mod training;

use std::path::{Path, PathBuf};

/// The workspace root, two levels above this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The training corpus, committed as `models/shakespeare/tinyshakespeare.txt`.
fn corpus() -> String {
    let path = workspace_root().join("models/shakespeare/tinyshakespeare.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("corpus {} not readable: {e}", path.display()))
}

/// The committed model's directory, checked to hold both files.
fn committed_model() -> PathBuf {
    let dir = workspace_root().join("models/shakespeare");
    for file in ["model.bin", "tokenizer.bin"] {
        assert!(
            dir.join(file).is_file(),
            "{} is missing: it is committed; `cargo xtask train-model` makes it again",
            dir.join(file).display()
        );
    }
    dir
}
