//! The `fabstir` command-line client: a local devnet, asking a model, listing nodes, job
//! status, balances and a local faucet, built on `fabstir-sdk`.
