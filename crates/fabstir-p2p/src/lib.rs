//! Peer-to-peer networking for Fabstir on libp2p: bootstrap and Kademlia discovery of model
//! providers, signed capabilities, node ranking, a connection pool and authenticated token
//! streams.
//!
//! It depends on `fabstir-core` only. What it needs from the chain ("which address owns this
//! peer id, and is it active?") it takes through a small trait, never from `fabstir-contracts`.
