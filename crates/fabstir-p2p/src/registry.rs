//! Identity and capability checks against the registry: converting peer ids, signing a host's
//! capabilities, and verifying a host's answer against the [`PeerRegistry`] port (declared in
//! `fabstir-core`, implemented over the NodeRegistry contract by `fabstir-contracts`).

use fabstir_core::auth;
use fabstir_core::wire::CapabilitiesResponse;
use fabstir_core::{ModelId, NodePeerId, PeerRegistry};
use libp2p::PeerId;

use crate::{Error, Result};

/// The core peer id of a libp2p peer id (the same multihash bytes).
pub fn node_peer_id(peer: &PeerId) -> Result<NodePeerId> {
    Ok(NodePeerId::from_bytes(peer.to_bytes())?)
}

/// The libp2p peer id of a core peer id.
pub fn libp2p_peer_id(peer: &NodePeerId) -> Result<PeerId> {
    PeerId::from_bytes(peer.as_bytes()).map_err(|e| {
        Error::Wire(fabstir_core::Error::InvalidId {
            kind: "peer id",
            reason: e.to_string(),
        })
    })
}

/// Signs a host's capabilities: the identity signature over
/// [`auth::identity_message`]`(chain_id, capabilities.peer_id, key's address)`. The
/// capabilities' `eth_address` is set to the key's address.
pub fn sign_capabilities(
    key: &ethers_core::k256::ecdsa::SigningKey,
    chain_id: u64,
    mut capabilities: fabstir_core::NodeCapabilities,
) -> Result<CapabilitiesResponse> {
    capabilities.eth_address = auth::address_of(key);
    let message = auth::identity_message(chain_id, &capabilities.peer_id, capabilities.eth_address);
    let signature = auth::sign_message(key, &message)?;
    Ok(CapabilitiesResponse {
        capabilities,
        chain_id,
        identity_signature: signature.to_vec(),
    })
}

/// Checks a capabilities answer received from `peer` over an authenticated connection:
/// the claimed peer id is the connection's, the chain is ours, the identity signature
/// recovers to the claimed address, and that address is active in the registry with this peer
/// id (looked up by address: peer ids are not exclusive, so another address registering the
/// same peer id changes nothing), and every price it signs is its registered price. With `model`, the host must also serve it (in its answer and in the
/// registry).
pub async fn verify_capabilities(
    response: &CapabilitiesResponse,
    peer: &PeerId,
    chain_id: u64,
    registry: &dyn PeerRegistry,
    model: Option<&ModelId>,
) -> Result<()> {
    let unverified = |reason: String| Error::Unverified {
        peer: peer.to_string(),
        reason,
    };
    let caps = &response.capabilities;
    let expected = node_peer_id(peer)?;
    if caps.peer_id != expected {
        return Err(unverified(format!("claims peer id {}", caps.peer_id)));
    }
    if response.chain_id != chain_id {
        return Err(unverified(format!(
            "signed for chain {}, expected {chain_id}",
            response.chain_id
        )));
    }
    let message = auth::identity_message(chain_id, &caps.peer_id, caps.eth_address);
    auth::verify_signer(&message, &response.identity_signature, caps.eth_address)
        .map_err(|e| unverified(format!("identity signature: {e}")))?;
    let node = registry
        .node(caps.eth_address)
        .await?
        .ok_or_else(|| unverified(format!("{:#x} is not in the registry", caps.eth_address)))?;
    if node.peer_id != expected {
        return Err(unverified(format!(
            "{:#x} registered peer id {}, not this one",
            caps.eth_address, node.peer_id
        )));
    }
    if !node.active {
        return Err(unverified("not active in the registry".into()));
    }
    if let Some(model) = model
        && (!caps.serves(model) || !node.models.contains(model))
    {
        return Err(unverified(format!("does not serve model {model}")));
    }
    // The signed prices are the registered ones, so a quote checked against the signed price
    // is checked against the registry's too.
    for price in &caps.prices {
        let registered = node
            .prices
            .iter()
            .find(|p| p.token == price.token)
            .map(|p| p.price_per_token);
        if registered != Some(price.price_per_token) {
            return Err(unverified(format!(
                "signs a price of {} for token {:#x}, the registry has {:?}",
                price.price_per_token.base_units(),
                price.token,
                registered.map(|p| p.base_units())
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ethers_core::k256::ecdsa::SigningKey;
    use fabstir_core::node::NodeCapabilities;
    use fabstir_core::primitives::Address;
    use fabstir_core::{InMemoryRegistry, NodeInfo, TokenAmount};

    use super::*;

    fn caps(peer: &PeerId, model: ModelId) -> NodeCapabilities {
        NodeCapabilities {
            peer_id: node_peer_id(peer).unwrap(),
            eth_address: Address::zero(),
            models: vec![model],
            prices: vec![],
            max_tokens: 10,
            current_load: 0,
            max_concurrent: 1,
            queue_depth: 0,
            version: "t".into(),
        }
    }

    fn info(peer: &PeerId, address: Address, model: ModelId, active: bool) -> NodeInfo {
        NodeInfo {
            address,
            peer_id: node_peer_id(peer).unwrap(),
            models: vec![model],
            prices: vec![],
            metadata: String::new(),
            stake: TokenAmount::default(),
            active,
        }
    }

    #[tokio::test]
    async fn verification_checks_every_binding() {
        let key = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let addr = auth::address_of(&key);
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let model = ModelId::from_name("m");
        let registry = InMemoryRegistry::new();
        let resp = sign_capabilities(&key, 5, caps(&peer, model)).unwrap();
        // Not registered yet.
        assert!(
            verify_capabilities(&resp, &peer, 5, &registry, Some(&model))
                .await
                .is_err()
        );
        registry.insert(info(&peer, addr, model, true));
        verify_capabilities(&resp, &peer, 5, &registry, Some(&model))
            .await
            .unwrap();
        // A signed price the registry does not have (a quote checked against it would not be
        // checked against the registry's price).
        let mut priced = caps(&peer, model);
        priced.prices = vec![fabstir_core::TokenPrice {
            token: Address::zero(),
            price_per_token: TokenAmount::from_base_units(5u64),
        }];
        let priced = sign_capabilities(&key, 5, priced).unwrap();
        assert!(
            verify_capabilities(&priced, &peer, 5, &registry, None)
                .await
                .is_err()
        );
        // Wrong chain, other connection peer, other model.
        assert!(
            verify_capabilities(&resp, &peer, 6, &registry, None)
                .await
                .is_err()
        );
        let other = PeerId::random();
        assert!(
            verify_capabilities(&resp, &other, 5, &registry, None)
                .await
                .is_err()
        );
        let m2 = ModelId::from_name("m2");
        assert!(
            verify_capabilities(&resp, &peer, 5, &registry, Some(&m2))
                .await
                .is_err()
        );
        // Tampered capabilities: the address no longer matches the signature.
        let mut forged = resp.clone();
        forged.capabilities.eth_address = Address::repeat_byte(1);
        registry.insert(info(&peer, Address::repeat_byte(1), model, true));
        assert!(
            verify_capabilities(&forged, &peer, 5, &registry, None)
                .await
                .is_err()
        );
        // The address registered another peer id (someone else registering this peer id under
        // their own address changes nothing), or it is inactive.
        registry.insert(info(&PeerId::random(), addr, model, true));
        assert!(
            verify_capabilities(&resp, &peer, 5, &registry, None)
                .await
                .is_err()
        );
        registry.insert(info(&peer, addr, model, false));
        assert!(
            verify_capabilities(&resp, &peer, 5, &registry, None)
                .await
                .is_err()
        );
        assert_eq!(libp2p_peer_id(&node_peer_id(&peer).unwrap()).unwrap(), peer);
    }
}
