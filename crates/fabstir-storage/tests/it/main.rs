//! Integration tests of fabstir-storage: one suite run over every store implementation, plus
//! store-specific tests (restarts for the local store, a fake Kubo node for the IPFS store).

mod fake_kubo;
mod ipfs;
mod local;
mod memory;
mod suite;
mod vectors;

/// Errors in tests are reported, not unwrapped.
type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
