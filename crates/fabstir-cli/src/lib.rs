//! The `fabstir` command-line client: a local devnet, asking a model, listing nodes, job
//! status, balances and a local faucet, built on `fabstir-sdk`.
//!
//! The library part holds [`devnet`], a whole local marketplace in one process, which the
//! binary, the demo and the end-to-end tests share. Being an application crate, it reports
//! errors with `anyhow`.

pub mod devnet;

pub use devnet::{Devnet, DevnetConfig, ModelFiles};
