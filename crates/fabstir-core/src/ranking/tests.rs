use std::time::Duration;

use crate::node::{NodeCapabilities, NodeHistory, TokenPrice};
use crate::primitives::Address;
use crate::{ModelId, NodePeerId, ProviderQuery, ScoreWeights, TokenAmount};

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

// Property tests: arbitrary candidates and criteria. Peer ids are distinct within a list
// (a peer id names one host), so the order is total.

use proptest::prelude::*;

/// Prices with many ties (small values) and extremes (all 256 bits).
fn arb_price() -> impl Strategy<Value = U256> {
    prop_oneof![
        (0u64..4).prop_map(U256::from),
        any::<u64>().prop_map(U256::from),
        any::<[u8; 32]>().prop_map(|b| U256::from_big_endian(&b)),
    ]
}

/// Latencies with ties (tens of milliseconds) and extremes.
fn arb_latency() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..3).prop_map(|ms| Duration::from_millis(ms * 10)),
        any::<u64>().prop_map(Duration::from_micros),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

/// Token 0 (ETH) or token 1.
fn arb_token() -> impl Strategy<Value = Address> {
    (0u8..2).prop_map(Address::repeat_byte)
}

/// Model "m" mostly, sometimes another.
fn arb_model() -> impl Strategy<Value = ModelId> {
    prop_oneof![4 => Just("m"), 1 => Just("other")].prop_map(ModelId::from_name)
}

/// Everything about a node but its peer id, which the list assigns.
#[derive(Debug, Clone)]
struct Parts {
    model: ModelId,
    prices: Vec<(Address, U256)>,
    latency: Duration,
    load: (u32, u32, u32),
    history: NodeHistory,
}

fn arb_parts() -> impl Strategy<Value = Parts> {
    (
        arb_model(),
        prop::collection::vec((arb_token(), arb_price()), 0..3),
        arb_latency(),
        (0u32..4, 0u32..4, 0u32..4),
        // Small histories tie often; large ones test the arithmetic.
        prop_oneof![(0u32..3, 0u32..3), any::<(u32, u32)>()],
    )
        .prop_map(
            |(model, prices, latency, load, (successes, failures))| Parts {
                model,
                prices,
                latency,
                load,
                history: NodeHistory {
                    successes,
                    failures,
                },
            },
        )
}

fn build(i: u8, parts: &Parts) -> DiscoveredNode {
    let mut n = node(i, 0, 0, 0, parts.history);
    n.capabilities.models = vec![parts.model];
    n.capabilities.prices = parts
        .prices
        .iter()
        .map(|&(token, price)| TokenPrice {
            token,
            price_per_token: TokenAmount::from_base_units(price),
        })
        .collect();
    n.latency = parts.latency;
    (
        n.capabilities.current_load,
        n.capabilities.max_concurrent,
        n.capabilities.queue_depth,
    ) = parts.load;
    n
}

/// Up to 12 nodes with peer ids 0, 1, 2, ...; some are copies of others under another
/// peer id, so that only the peer id breaks their tie.
fn arb_nodes() -> impl Strategy<Value = Vec<DiscoveredNode>> {
    (
        prop::collection::vec(arb_parts(), 0..8),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_map(|(mut parts, copies)| {
            if !parts.is_empty() {
                let extra: Vec<Parts> = copies
                    .iter()
                    .map(|i| parts[i.index(parts.len())].clone())
                    .collect();
                parts.extend(extra);
            }
            parts.iter().zip(0u8..).map(|(p, i)| build(i, p)).collect()
        })
}

fn arb_criteria() -> impl Strategy<Value = SelectionCriteria> {
    (
        arb_model(),
        arb_token(),
        prop::option::of(arb_price()),
        prop::option::of(arb_latency()),
        prop_oneof![
            Just((40, 30, 15, 15)),
            (0u32..4, 0u32..4, 0u32..4, 0u32..4),
            any::<(u32, u32, u32, u32)>(),
        ],
        prop::collection::vec(0u8..16, 0..4),
    )
        .prop_map(
            |(
                model,
                token,
                max_price,
                max_latency,
                (price, latency, load, reliability),
                exclude,
            )| {
                let mut c = SelectionCriteria::new(ProviderQuery::new(model, token));
                c.query.max_price = max_price.map(TokenAmount::from_base_units);
                c.query.max_latency = max_latency;
                c.weights = ScoreWeights {
                    price,
                    latency,
                    load,
                    reliability,
                };
                c.exclude = exclude.into_iter().map(peer).collect();
                c
            },
        )
}

/// The selection criteria spelled out independently of `ProviderQuery::matches`.
fn satisfies(n: &DiscoveredNode, c: &SelectionCriteria) -> bool {
    let caps = &n.capabilities;
    let Some(price) = caps.prices.iter().find(|p| p.token == c.query.token) else {
        return false;
    };
    caps.models.contains(&c.query.model)
        && c.query
            .max_price
            .is_none_or(|max| price.price_per_token <= max)
        && c.query.max_latency.is_none_or(|max| n.latency <= max)
        && !c.exclude.contains(&caps.peer_id)
}

/// Results compared by value (errors by their message).
fn same(a: &Result<Vec<ScoredNode>>, b: &Result<Vec<ScoredNode>>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.to_string() == b.to_string(),
        _ => false,
    }
}

proptest! {
    #[test]
    fn ranking_is_deterministic_and_independent_of_input_order(
        (nodes, shuffled) in arb_nodes().prop_flat_map(|n| (Just(n.clone()), Just(n).prop_shuffle())),
        c in arb_criteria(),
    ) {
        let first = rank_scored(nodes.clone(), &c);
        let again = rank_scored(nodes, &c);
        let permuted = rank_scored(shuffled, &c);
        prop_assert!(same(&first, &again), "{first:?} then {again:?}");
        prop_assert!(same(&first, &permuted), "{first:?} but permuted {permuted:?}");
    }

    #[test]
    fn ranking_never_panics_and_keeps_exactly_the_matching_nodes(
        nodes in arb_nodes(),
        c in arb_criteria(),
    ) {
        let matching = nodes.iter().filter(|n| satisfies(n, &c)).count();
        match rank_scored(nodes.clone(), &c) {
            Err(Error::NoCandidates) => prop_assert!(nodes.is_empty()),
            Err(Error::NoneMatch { candidates }) => {
                prop_assert!(!nodes.is_empty());
                prop_assert_eq!(candidates, nodes.len());
                prop_assert_eq!(matching, 0);
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
            Ok(ranked) => {
                prop_assert_eq!(ranked.len(), matching);
                prop_assert!(ranked.iter().all(|s| satisfies(&s.node, &c)));
                prop_assert!(ranked.windows(2).all(|w| w[0].score >= w[1].score));
                // The best node satisfies the criteria and is what `select_optimal` picks.
                let best = select_optimal(nodes.clone(), &c).ok();
                prop_assert_eq!(best.as_ref(), Some(&ranked[0].node));
                prop_assert_eq!(
                    rank(nodes, &c).ok(),
                    Some(ranked.into_iter().map(|s| s.node).collect::<Vec<_>>())
                );
            }
        }
    }

    #[test]
    fn empty_candidates_are_an_error(c in arb_criteria()) {
        prop_assert!(matches!(rank_scored(vec![], &c), Err(Error::NoCandidates)));
        prop_assert!(matches!(rank(vec![], &c), Err(Error::NoCandidates)));
        prop_assert!(matches!(select_optimal(vec![], &c), Err(Error::NoCandidates)));
    }

    #[test]
    fn a_cheaper_node_never_ranks_below_an_otherwise_equal_dearer_one(
        others in arb_nodes(),
        base in arb_parts(),
        cheap in arb_price(),
        extra in arb_price(),
        at in any::<prop::sample::Index>(),
        c in arb_criteria(),
    ) {
        // Peer ids 200 and 201 are never excluded (`arb_criteria` excludes below 16), so
        // price is the only difference that counts.
        let dear = cheap.saturating_add(extra.max(U256::one()));
        prop_assume!(dear > cheap);
        let with_price = |i: u8, price: U256| {
            let mut parts = base.clone();
            parts.prices = vec![(c.query.token, price)];
            build(i, &parts)
        };
        let (cheap_node, dear_node) = (with_price(200, cheap), with_price(201, dear));
        let mut nodes = others;
        nodes.push(dear_node);
        nodes.insert(at.index(nodes.len() + 1), cheap_node);
        let position = |ranked: &[DiscoveredNode], i: u8| {
            ranked.iter().position(|n| n.capabilities.peer_id == peer(i))
        };
        if let Ok(ranked) = rank(nodes, &c)
            && let Some(dear_at) = position(&ranked, 201)
        {
            let cheap_at = position(&ranked, 200);
            prop_assert!(
                cheap_at.is_some_and(|i| i < dear_at),
                "cheap at {cheap_at:?}, dear at {dear_at}"
            );
        }
    }
}
