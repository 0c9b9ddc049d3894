//! Node ranking: the seed's `selectOptimalNode`. Pure functions over discovered nodes, no
//! swarm: filter by [`SelectionCriteria`], score with integers, order deterministically.
//!
//! Each part of the score is in basis points (0..=10_000, higher is better):
//! - price: `10_000 * (max - price) / (max - min)` over the candidates' prices in the query's
//!   token (10_000 for all when they are equal);
//! - latency: the same over measured latency in microseconds;
//! - load: `10_000 * 10_000 / (10_000 + load_bps)` (10_000 idle, 5_000 full);
//! - reliability: [`NodeHistory::success_bps`](fabstir_core::node::NodeHistory::success_bps).
//!
//! The score is `sum(weight * part)`; ties are broken by lower price, lower latency, then
//! peer id bytes, so equal inputs always give the same order.

use std::cmp::Reverse;

use ethers_core::types::U512;
use fabstir_core::primitives::U256;
use fabstir_core::{DiscoveredNode, SelectionCriteria};

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
mod tests {
    use std::time::Duration;

    use fabstir_core::node::{NodeCapabilities, NodeHistory, TokenPrice};
    use fabstir_core::primitives::Address;
    use fabstir_core::{ModelId, NodePeerId, ProviderQuery, ScoreWeights, TokenAmount};

    use super::*;

    fn peer(i: u8) -> NodePeerId {
        let mut bytes = vec![0x00, 36, 8, 1, 18, 32];
        bytes.extend_from_slice(&[i; 32]);
        NodePeerId::from_bytes(bytes).unwrap()
    }

    fn node(i: u8, price: u64, latency_ms: u64, load: u32, history: NodeHistory) -> DiscoveredNode {
        DiscoveredNode {
            capabilities: NodeCapabilities {
                peer_id: peer(i),
                eth_address: Address::repeat_byte(i),
                models: vec![ModelId::from_name("m")],
                prices: vec![TokenPrice {
                    token: Address::zero(),
                    price_per_token: TokenAmount::from_base_units(price),
                }],
                max_tokens: 1000,
                current_load: load,
                max_concurrent: 4,
                queue_depth: 0,
                version: "t".into(),
            },
            addresses: vec![],
            latency: Duration::from_millis(latency_ms),
            history,
        }
    }

    fn criteria() -> SelectionCriteria {
        SelectionCriteria::new(ProviderQuery::new(ModelId::from_name("m"), Address::zero()))
    }

    fn ids(nodes: &[DiscoveredNode]) -> Vec<NodePeerId> {
        nodes
            .iter()
            .map(|n| n.capabilities.peer_id.clone())
            .collect()
    }

    #[test]
    fn empty_and_unmatched_inputs_are_errors() {
        assert!(matches!(
            rank(vec![], &criteria()),
            Err(Error::NoCandidates)
        ));
        assert!(matches!(
            select_optimal(vec![], &criteria()),
            Err(Error::NoCandidates)
        ));
        let mut c = criteria();
        c.query.model = ModelId::from_name("other");
        let nodes = vec![node(1, 10, 10, 0, NodeHistory::default())];
        assert!(matches!(
            rank(nodes, &c),
            Err(Error::NoneMatch { candidates: 1 })
        ));
    }

    #[test]
    fn filters_by_price_latency_and_exclusions() {
        let h = NodeHistory::default();
        let nodes = vec![
            node(1, 10, 10, 0, h),
            node(2, 50, 10, 0, h),
            node(3, 10, 500, 0, h),
        ];
        let mut c = criteria();
        c.query.max_price = Some(TokenAmount::from_base_units(20u64));
        c.query.max_latency = Some(Duration::from_millis(100));
        assert_eq!(ids(&rank(nodes.clone(), &c).unwrap()), vec![peer(1)]);
        c.exclude = vec![peer(1)];
        assert!(matches!(
            rank(nodes, &c),
            Err(Error::NoneMatch { candidates: 3 })
        ));
    }

    #[test]
    fn cheaper_faster_idler_and_reliable_win() {
        let h = NodeHistory::default();
        // Same except price.
        let ranked = rank(
            vec![node(1, 20, 10, 0, h), node(2, 10, 10, 0, h)],
            &criteria(),
        )
        .unwrap();
        assert_eq!(ids(&ranked), vec![peer(2), peer(1)]);
        // Same except latency.
        let ranked = rank(
            vec![node(1, 10, 90, 0, h), node(2, 10, 10, 0, h)],
            &criteria(),
        )
        .unwrap();
        assert_eq!(ids(&ranked), vec![peer(2), peer(1)]);
        // Same except load.
        let ranked = rank(
            vec![node(1, 10, 10, 4, h), node(2, 10, 10, 0, h)],
            &criteria(),
        )
        .unwrap();
        assert_eq!(ids(&ranked), vec![peer(2), peer(1)]);
        // Same except history.
        let bad = NodeHistory {
            successes: 0,
            failures: 9,
        };
        let good = NodeHistory {
            successes: 9,
            failures: 0,
        };
        let ranked = rank(
            vec![node(1, 10, 10, 0, bad), node(2, 10, 10, 0, good)],
            &criteria(),
        )
        .unwrap();
        assert_eq!(ids(&ranked), vec![peer(2), peer(1)]);
    }

    #[test]
    fn weights_decide_between_price_and_latency() {
        let h = NodeHistory::default();
        let cheap_slow = node(1, 10, 100, 0, h);
        let dear_fast = node(2, 20, 10, 0, h);
        let mut c = criteria();
        c.weights = ScoreWeights {
            price: 100,
            latency: 1,
            load: 0,
            reliability: 0,
        };
        assert_eq!(
            select_optimal(vec![cheap_slow.clone(), dear_fast.clone()], &c).unwrap(),
            cheap_slow
        );
        c.weights = ScoreWeights {
            price: 1,
            latency: 100,
            load: 0,
            reliability: 0,
        };
        assert_eq!(
            select_optimal(vec![cheap_slow, dear_fast.clone()], &c).unwrap(),
            dear_fast
        );
    }

    #[test]
    fn ties_are_broken_by_peer_id_whatever_the_input_order() {
        let h = NodeHistory::default();
        let a = vec![
            node(3, 10, 10, 0, h),
            node(1, 10, 10, 0, h),
            node(2, 10, 10, 0, h),
        ];
        let mut b = a.clone();
        b.reverse();
        let ra = rank(a, &criteria()).unwrap();
        assert_eq!(ids(&ra), vec![peer(1), peer(2), peer(3)]);
        assert_eq!(ra, rank(b, &criteria()).unwrap());
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let h = NodeHistory {
            successes: u32::MAX,
            failures: u32::MAX,
        };
        let mut n = node(1, u64::MAX, u64::MAX / 1000, u32::MAX, h);
        n.capabilities.queue_depth = u32::MAX;
        n.capabilities.max_concurrent = 0;
        n.capabilities.prices[0].price_per_token = TokenAmount::from_base_units(U256::MAX);
        let mut c = criteria();
        c.weights = ScoreWeights {
            price: u32::MAX,
            latency: u32::MAX,
            load: u32::MAX,
            reliability: u32::MAX,
        };
        let ranked = rank_scored(vec![n, node(2, 0, 0, 0, h)], &c).unwrap();
        assert_eq!(ranked[0].node.capabilities.peer_id, peer(2));
    }
}
