//! Integration tests of fabstir-inference against the real test models.

mod engine;
mod files;
mod openai;
mod tokenizer;

use std::path::{Path, PathBuf};

/// The directory of the committed test models, `<workspace>/models/tinyllamas`.
fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tinyllamas")
}

/// A test model file; a missing file fails the test with a message saying where it belongs.
fn model_file(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "test model {} not found (the test models are committed in models/tinyllamas)",
        path.display()
    );
    path
}
