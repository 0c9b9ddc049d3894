//! The registry port over the chain: [`ChainPeerRegistry`] answers the network layer's
//! question "which peer id did this address register, is it active, what does it serve" from
//! the NodeRegistry contract. Hosts and clients both hand it to `fabstir-p2p`.

use async_trait::async_trait;
use ethers::types::Address;
use fabstir_core::{NodeInfo, PeerRegistry, RegistryError};

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
    async fn node(&self, address: Address) -> Result<Option<NodeInfo>, RegistryError> {
        let node = self
            .contracts
            .node(address)
            .await
            .map_err(RegistryError::new)?;
        Ok(node.map(|n| n.info))
    }
}
