//! Content-addressed storage of job results for Fabstir hosts.
//!
//! A host stores the full output of every job it serves and submits the output's CID on chain
//! as the job's result; a client recomputes the CID of the text it received and compares.
//! Both sides therefore need the same, fixed notion of "the CID of these bytes": CIDv1 with the
//! raw codec (`0x55`) and a sha2-256 multihash, written as base32 lower (`bafkrei...`). See
//! [`cid_of`] and [`parse_cid`].
//!
//! Storage is used through the [`ResultStore`] trait, which verifies the hash on every read so
//! a corrupted file or a lying IPFS node is an error, never returned data. Implementations:
//!
//! - [`LocalStore`]: files on the local file system, the embedded default of a host;
//! - [`IpfsStore`]: a Kubo (go-ipfs) node spoken to through its RPC API;
//! - `MemoryStore` (feature `test-utils`): in memory, for unit tests of upper layers.
//!
//! This crate depends only on `fabstir-core`; serving results over libp2p lives in
//! `fabstir-p2p`.

mod content;
mod error;
mod ipfs;
mod local;
#[cfg(any(test, feature = "test-utils"))]
mod memory;
mod store;

pub use cid::Cid;
pub use content::{RAW_CODEC, SHA2_256_CODE, check_cid, cid_of, parse_cid, verify};
pub use error::{Error, Result};
pub use ipfs::{IpfsConfig, IpfsStore};
pub use local::LocalStore;
#[cfg(any(test, feature = "test-utils"))]
pub use memory::MemoryStore;
pub use store::{DEFAULT_MAX_SIZE, ResultStore};
