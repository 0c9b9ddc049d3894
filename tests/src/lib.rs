//! Shared harness for the Fabstir end-to-end tests in `tests/it`: locating the workspace, the
//! shared test models and the developer tools.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the virtual `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The folder of shared test models: `FABSTIR_TEST_MODELS` if set, else `../shared/models`
/// beside the workspace root.
pub fn test_models_dir() -> PathBuf {
    match std::env::var_os("FABSTIR_TEST_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/models"),
    }
}
