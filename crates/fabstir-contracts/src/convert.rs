//! Conversions between the domain types of `fabstir-core` and the generated bindings, kept in
//! one place so the rest of the crate speaks core types only.

use ethers::types::{Address, Bytes, Signature, U256};
use fabstir_core::{
    JobDetails, JobId, JobRequirements, ModelId, NodeInfo, NodePeerId, TokenAmount, TokenPrice,
};

use crate::bindings::{job_marketplace, node_registry};
use crate::error::{Error, Result};
use crate::types::{NodeRegistration, RegisteredNode};

/// Job details as the contract takes them.
pub(crate) fn details_to_abi(details: &JobDetails) -> job_marketplace::JobDetails {
    job_marketplace::JobDetails {
        model_id: details.model.0,
        prompt_hash: details.prompt_hash.0,
        max_tokens: details.max_tokens,
        price_per_token: details.price_per_token.base_units(),
        deadline: details.deadline,
    }
}

/// Job requirements as the contract takes them (the zero address means any host).
pub(crate) fn requirements_to_abi(req: &JobRequirements) -> job_marketplace::JobRequirements {
    job_marketplace::JobRequirements {
        host: req.assigned_host.unwrap_or_else(Address::zero),
    }
}

/// A registration as the contract's `register` arguments.
pub(crate) struct RegisterArgs {
    pub(crate) peer_id: Bytes,
    pub(crate) models: Vec<[u8; 32]>,
    pub(crate) tokens: Vec<Address>,
    pub(crate) prices: Vec<U256>,
    pub(crate) metadata: String,
    pub(crate) stake: U256,
}

pub(crate) fn registration_to_abi(reg: &NodeRegistration) -> RegisterArgs {
    let (tokens, prices) = prices_to_abi(&reg.prices);
    RegisterArgs {
        peer_id: Bytes::from(reg.peer_id.as_bytes().to_vec()),
        models: models_to_abi(&reg.models),
        tokens,
        prices,
        metadata: reg.metadata.clone(),
        stake: reg.stake.base_units(),
    }
}

pub(crate) fn models_to_abi(models: &[ModelId]) -> Vec<[u8; 32]> {
    models.iter().map(|m| m.0).collect()
}

pub(crate) fn prices_to_abi(prices: &[TokenPrice]) -> (Vec<Address>, Vec<U256>) {
    prices
        .iter()
        .map(|p| (p.token, p.price_per_token.base_units()))
        .unzip()
}

/// A node as the registry returns it; `None` when the address has no record.
pub(crate) fn node_from_abi(node: node_registry::Node) -> Result<Option<RegisteredNode>> {
    if node.stake.is_zero() && !node.active {
        return Ok(None);
    }
    let peer_id = NodePeerId::from_bytes(node.peer_id.to_vec())
        .map_err(|e| Error::InvalidChainData(format!("peer id of {:#x}: {e}", node.operator)))?;
    if node.price_tokens.len() != node.prices.len() {
        return Err(Error::InvalidChainData(format!(
            "node {:#x} has {} price tokens and {} prices",
            node.operator,
            node.price_tokens.len(),
            node.prices.len()
        )));
    }
    let prices = node
        .price_tokens
        .iter()
        .zip(&node.prices)
        .map(|(token, price)| TokenPrice {
            token: *token,
            price_per_token: TokenAmount(*price),
        })
        .collect();
    Ok(Some(RegisteredNode {
        info: NodeInfo {
            address: node.operator,
            peer_id,
            models: node.models.into_iter().map(ModelId).collect(),
            prices,
            metadata: node.metadata,
            stake: TokenAmount(node.stake),
            active: node.active,
        },
        unbonding_end: (!node.active && node.unbonding_end != 0).then_some(node.unbonding_end),
    }))
}

/// A signature as the `(v, r, s)` a permit call takes.
pub(crate) fn split_signature(signature: &Signature) -> Result<(u8, [u8; 32], [u8; 32])> {
    let v = u8::try_from(signature.v)
        .map_err(|_| Error::Signing(format!("unexpected recovery id {}", signature.v)))?;
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    signature.r.to_big_endian(&mut r);
    signature.s.to_big_endian(&mut s);
    Ok((v, r, s))
}

/// A contract job id as a [`JobId`]; ids beyond 64 bits are malformed chain data.
pub(crate) fn job_id(id: U256) -> Result<JobId> {
    JobId::from_u256(id).map_err(Error::from)
}

/// `None` for the zero address.
pub(crate) fn non_zero(address: Address) -> Option<Address> {
    (!address.is_zero()).then_some(address)
}
