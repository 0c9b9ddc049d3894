//! The registry port: what the network layer needs from the chain ("which Ethereum address
//! owns this peer id, is it active, which models does it serve?"), over core types only.
//! `fabstir-contracts` implements [`PeerRegistry`] over the NodeRegistry contract;
//! [`InMemoryRegistry`] serves tests and local setups.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

use crate::{NodeInfo, NodePeerId};

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
    /// The registered host whose peer id is `peer`, or `None` if there is none.
    async fn node_by_peer(&self, peer: &NodePeerId) -> Result<Option<NodeInfo>, RegistryError>;
}

/// A [`PeerRegistry`] held in memory, for tests and local setups.
#[derive(Debug, Default)]
pub struct InMemoryRegistry {
    nodes: RwLock<HashMap<NodePeerId, NodeInfo>>,
}

impl InMemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a host under its `peer_id`.
    pub fn insert(&self, node: NodeInfo) {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.peer_id.clone(), node);
    }

    /// Removes a host.
    pub fn remove(&self, peer: &NodePeerId) -> Option<NodeInfo> {
        self.nodes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(peer)
    }
}

#[async_trait]
impl PeerRegistry for InMemoryRegistry {
    async fn node_by_peer(&self, peer: &NodePeerId) -> Result<Option<NodeInfo>, RegistryError> {
        Ok(self
            .nodes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .cloned())
    }
}
