//! Integration tests of fabstir-inference against the real test models.

mod engine;
mod files;
mod openai;
mod tokenizer;

use std::path::{Path, PathBuf};

/// The directory of the shared test models: `FABSTIR_TEST_MODELS`, or `../shared/models`
/// beside the workspace.
fn models_dir() -> PathBuf {
    match std::env::var_os("FABSTIR_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models"),
    }
}

/// A test model file; a missing file fails the test with a message saying where it belongs.
fn model_file(name: &str) -> PathBuf {
    let path = models_dir().join(name);
    assert!(
        path.is_file(),
        "test model {} not found: put the shared test models in <workspace>/../shared/models \
         or point FABSTIR_TEST_MODELS at their directory",
        path.display()
    );
    path
}
