//! Integration tests of fabstir-contracts against a real anvil chain: one binary, one module
//! per area. Every test ends with `Env::finish`, which checks conservation of funds.

mod admin;
mod cheats;
mod common;
mod conservation;
mod credit;
mod gas;
mod jobs;
mod reentrancy;
mod registry;
mod sessions;
mod tokens;
