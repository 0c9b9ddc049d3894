//! The registry port: what the network layer needs from the chain ("which peer id did this
//! Ethereum address register, is it active, which models does it serve?"), over core types
//! only. The question goes from address to peer id, never the other way: registering a peer
//! id proves no ownership of its key, so the registry does not make peer ids exclusive (that
//! would let anyone lock a host out by registering its peer id first). The peer id is proven
//! by the connection (Noise) and the address by the host's identity signature.
//! `fabstir-contracts` implements [`PeerRegistry`] over the NodeRegistry contract;
//! [`InMemoryRegistry`] serves tests and local setups.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use ethers_core::types::Address;

use crate::NodeInfo;

/// The registry could not be read (the chain is unreachable, an answer did not decode). The
/// cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
#[error("registry unavailable: {0}")]
pub struct RegistryError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl RegistryError {
    /// Wraps the implementation's error.
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(cause))
    }
}

/// The registry of hosts as the network layer sees it.
#[async_trait]
pub trait PeerRegistry: Send + Sync {
    /// The host registered by `address` (active or not), or `None` if there is none.
    async fn node(&self, address: Address) -> Result<Option<NodeInfo>, RegistryError>;
}

/// A [`PeerRegistry`] held in memory, for tests and local setups.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    nodes: RwLock<HashMap<Address, NodeInfo>>,
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a host under its address.
    pub fn insert(&self, node: NodeInfo) {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.address, node);
    }

    /// Removes a host.
    pub fn remove(&self, address: Address) -> Option<NodeInfo> {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address)
    }
}

#[async_trait]
impl PeerRegistry for InMemoryRegistry {
    async fn node(&self, address: Address) -> Result<Option<NodeInfo>, RegistryError> {
        Ok(self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&address)
            .cloned())
    }
}
