//! Node ranking: the seed's `selectOptimalNode`. Pure functions over discovered nodes, no
//! swarm: filter by [`SelectionCriteria`], score with integers, order deterministically.
//!
//! Each part of the score is in basis points (0..=10_000, higher is better):
//! - price: `10_000 * (max - price) / (max - min)` over the candidates' prices in the query's
//!   token (10_000 for all when they are equal);
//! - latency: the same over measured latency in microseconds;
//! - load: `10_000 * 10_000 / (10_000 + load_bps)` (10_000 idle, 5_000 full);
//! - reliability: [`NodeHistory::success_bps`](crate::node::NodeHistory::success_bps).
//!
//! The score is `sum(weight * part)`; ties are broken by lower price, lower latency, then
//! peer id bytes, so equal inputs always give the same order.

use std::cmp::Reverse;

use crate::primitives::U256;
use crate::{DiscoveredNode, SelectionCriteria};
use ethers_core::types::U512;

use crate::{Error, Result};

const FULL: u64 = 10_000;

/// A candidate with its score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoredNode {
    /// The node.
    pub node: DiscoveredNode,
    /// Its score (higher is better).
    pub score: u64,
}

/// Filters `nodes` by `criteria`, scores them and returns them best first.
///
/// An empty input is [`Error::NoCandidates`]; candidates of which none pass the filter are
/// [`Error::NoneMatch`].
pub fn rank(
    nodes: Vec<DiscoveredNode>,
    criteria: &SelectionCriteria,
) -> Result<Vec<DiscoveredNode>> {
    Ok(rank_scored(nodes, criteria)?
        .into_iter()
        .map(|s| s.node)
        .collect())
}

/// The best node for `criteria`, as [`rank`] orders them.
pub fn select_optimal(
    nodes: Vec<DiscoveredNode>,
    criteria: &SelectionCriteria,
) -> Result<DiscoveredNode> {
    rank(nodes, criteria)?
        .into_iter()
        .next()
        .ok_or(Error::NoCandidates)
}

/// Like [`rank`], keeping each node's score.
pub fn rank_scored(
    nodes: Vec<DiscoveredNode>,
    criteria: &SelectionCriteria,
) -> Result<Vec<ScoredNode>> {
    if nodes.is_empty() {
        return Err(Error::NoCandidates);
    }
    let total = nodes.len();
    let token = criteria.query.token;
    // Filtered candidates with their price (present: `matches` requires it).
    let candidates: Vec<(DiscoveredNode, U256)> = nodes
        .into_iter()
        .filter(|n| criteria.query.matches(n))
        .filter(|n| !criteria.exclude.contains(&n.capabilities.peer_id))
        .filter_map(|n| {
            let price = n.capabilities.price_for(token)?.base_units();
            Some((n, price))
        })
        .collect();
    if candidates.is_empty() {
        return Err(Error::NoneMatch { candidates: total });
    }
    let micros = |n: &DiscoveredNode| u64::try_from(n.latency.as_micros()).unwrap_or(u64::MAX);
    let (min_price, max_price) = min_max(candidates.iter().map(|(_, p)| *p));
    let (min_lat, max_lat) = min_max(candidates.iter().map(|(n, _)| U256::from(micros(n))));
    let w = criteria.weights;
    let mut scored: Vec<(ScoredNode, U256)> = candidates
        .into_iter()
        .map(|(node, price)| {
            let price_part = relative(price, min_price, max_price);
            let latency_part = relative(U256::from(micros(&node)), min_lat, max_lat);
            let load_part = FULL * FULL / (FULL + u64::from(node.capabilities.load_bps()));
            let reliability_part = u64::from(node.history.success_bps()).min(FULL);
            let score = u64::from(w.price) * price_part
                + u64::from(w.latency) * latency_part
                + u64::from(w.load) * load_part
                + u64::from(w.reliability) * reliability_part;
            (ScoredNode { node, score }, price)
        })
        .collect();
    scored.sort_by(|(a, pa), (b, pb)| {
        (
            Reverse(a.score),
            pa,
            a.node.latency,
            a.node.capabilities.peer_id.as_bytes(),
        )
            .cmp(&(
                Reverse(b.score),
                pb,
                b.node.latency,
                b.node.capabilities.peer_id.as_bytes(),
            ))
    });
    Ok(scored.into_iter().map(|(s, _)| s).collect())
}

fn min_max(values: impl Iterator<Item = U256>) -> (U256, U256) {
    values.fold((U256::MAX, U256::zero()), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

/// `FULL * (max - value) / (max - min)`: 10_000 for the lowest value, 0 for the highest.
fn relative(value: U256, min: U256, max: U256) -> u64 {
    if max <= min {
        return FULL;
    }
    let span = max - min;
    let above = value.saturating_sub(min).min(span);
    // 512-bit product: prices may use all 256 bits.
    let part = (span - above).full_mul(U256::from(FULL)) / U512::from(span);
    part.low_u64().min(FULL)
}

#[cfg(test)]
mod tests;
