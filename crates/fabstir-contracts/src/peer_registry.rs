//! The registry port over the chain: [`ChainPeerRegistry`] answers the network layer's
//! question "which address owns this peer id, is it active, what does it serve" from the
//! NodeRegistry contract. Hosts and clients both hand it to `fabstir-p2p`.

use async_trait::async_trait;
use fabstir_core::{NodeInfo, NodePeerId, PeerRegistry, RegistryError};

use crate::HeadlessContractManager;

/// A [`PeerRegistry`] backed by the NodeRegistry contract.
#[derive(Debug, Clone)]
pub struct ChainPeerRegistry {
    contracts: HeadlessContractManager,
}

impl ChainPeerRegistry {
    /// A registry reading through `contracts`.
    pub fn new(contracts: HeadlessContractManager) -> Self {
        Self { contracts }
    }
}

#[async_trait]
impl PeerRegistry for ChainPeerRegistry {
    async fn node_by_peer(&self, peer: &NodePeerId) -> Result<Option<NodeInfo>, RegistryError> {
        let Some(owner) = self
            .contracts
            .node_by_peer_id(peer)
            .await
            .map_err(RegistryError::new)?
        else {
            return Ok(None);
        };
        let node = self
            .contracts
            .node(owner)
            .await
            .map_err(RegistryError::new)?;
        Ok(node.map(|n| n.info))
    }
}
