//! The network layer's view of the NodeRegistry: [`ChainPeerRegistry`] answers "which address
//! owns this peer id, is it active, what does it serve" from the chain, for the p2p layer's
//! capability checks.

use async_trait::async_trait;
use fabstir_contracts::HeadlessContractManager;
use fabstir_core::{NodeInfo, NodePeerId};
use fabstir_p2p::PeerRegistry;

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
    async fn node_by_peer(&self, peer: &NodePeerId) -> fabstir_p2p::Result<Option<NodeInfo>> {
        let unavailable = |e: fabstir_contracts::Error| fabstir_p2p::Error::Registry(e.to_string());
        let Some(owner) = self
            .contracts
            .node_by_peer_id(peer)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let node = self.contracts.node(owner).await.map_err(unavailable)?;
        Ok(node.map(|n| n.info))
    }
}
