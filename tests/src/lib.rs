//! Shared harness for the Fabstir end-to-end tests in `tests/it`: locating the workspace, the
//! committed test models and the developer tools.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The folder of the committed llama2.c test models, `models/tinyllamas`.
pub fn test_models_dir() -> PathBuf {
    workspace_root().join("models/tinyllamas")
}
