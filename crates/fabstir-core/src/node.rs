//! Hosts as the network sees them: advertised capabilities, registry records, discovery
//! results, and what a client asks of discovery and ranking.

use std::time::Duration;

use ethers_core::types::Address;
use serde::{Deserialize, Serialize};

use crate::amount::TokenAmount;
use crate::ids::{ModelId, NodePeerId};

/// A host's price per generated token in one payment token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenPrice {
    /// The payment token's address (the zero address for ETH).
    pub token: Address,
    /// Price per generated token, in that token's base units.
    pub price_per_token: TokenAmount,
}

/// What a host advertises over `/fabstir/capabilities`: the answer is signed with the host's
/// Ethereum key so a client can tie it to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCapabilities {
    /// The host's libp2p peer id.
    pub peer_id: NodePeerId,
    /// The host's Ethereum address (registered, paid, signs).
    pub eth_address: Address,
    /// Models served.
    pub models: Vec<ModelId>,
    /// Prices, one per accepted payment token.
    pub prices: Vec<TokenPrice>,
    /// Most tokens the host generates for one job.
    pub max_tokens: u32,
    /// Jobs running now.
    pub current_load: u32,
    /// Jobs the host runs at once.
    pub max_concurrent: u32,
    /// Jobs waiting for a slot.
    pub queue_depth: u32,
    /// Software version (`fabstir-node/0.1.0`).
    pub version: String,
}

impl NodeCapabilities {
    /// Whether the host serves `model`.
    pub fn serves(&self, model: &ModelId) -> bool {
        self.models.contains(model)
    }

    /// The host's price per token in `token`, if it accepts that token.
    pub fn price_for(&self, token: Address) -> Option<TokenAmount> {
        self.prices
            .iter()
            .find(|p| p.token == token)
            .map(|p| p.price_per_token)
    }

    /// Load as a share of capacity in basis points (10_000 = full; over 10_000 when queued).
    pub fn load_bps(&self) -> u32 {
        let busy = u64::from(self.current_load) + u64::from(self.queue_depth);
        let capacity = u64::from(self.max_concurrent.max(1));
        u32::try_from(busy * 10_000 / capacity).unwrap_or(u32::MAX)
    }
}

/// A host as the NodeRegistry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The host's Ethereum address (the registry key).
    pub address: Address,
    /// The libp2p peer id the host registered.
    pub peer_id: NodePeerId,
    /// Models the host registered.
    pub models: Vec<ModelId>,
    /// Registered prices per payment token.
    pub prices: Vec<TokenPrice>,
    /// Free-form metadata (e.g. a JSON description).
    pub metadata: String,
    /// FAB staked, in base units.
    pub stake: TokenAmount,
    /// Whether the host is active (registered and not unbonding).
    pub active: bool,
}

/// A host's record of past jobs as seen by this client, used in ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeHistory {
    /// Jobs the host completed for us.
    pub successes: u32,
    /// Jobs the host failed (did not claim, broke a stream, bad result).
    pub failures: u32,
}

impl NodeHistory {
    /// Success rate in basis points with a neutral prior (one success and one failure), so an
    /// unknown host scores 5_000 rather than 0 or 10_000.
    pub fn success_bps(&self) -> u32 {
        let ok = u64::from(self.successes) + 1;
        let total = ok + u64::from(self.failures) + 1;
        u32::try_from(ok * 10_000 / total).unwrap_or(10_000)
    }
}

/// A host found by discovery, with what the client measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredNode {
    /// The host's verified capabilities.
    pub capabilities: NodeCapabilities,
    /// Multiaddresses the host was reached at.
    pub addresses: Vec<String>,
    /// Measured round-trip latency.
    pub latency: Duration,
    /// This client's history with the host.
    pub history: NodeHistory,
}

/// A discovery query: providers of a model, acceptable in price and latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderQuery {
    /// The model wanted.
    pub model: ModelId,
    /// The payment token (zero address for ETH); hosts that do not accept it are dropped.
    pub token: Address,
    /// Highest acceptable price per token in `token`'s base units.
    pub max_price: Option<TokenAmount>,
    /// Highest acceptable measured latency.
    pub max_latency: Option<Duration>,
}

impl ProviderQuery {
    /// Providers of `model` paid in `token`, with no price or latency limit.
    pub fn new(model: ModelId, token: Address) -> Self {
        Self {
            model,
            token,
            max_price: None,
            max_latency: None,
        }
    }

    /// Whether a discovered node satisfies the query.
    pub fn matches(&self, node: &DiscoveredNode) -> bool {
        let caps = &node.capabilities;
        let Some(price) = caps.price_for(self.token) else {
            return false;
        };
        caps.serves(&self.model)
            && self.max_price.is_none_or(|max| price <= max)
            && self.max_latency.is_none_or(|max| node.latency <= max)
    }
}

/// Relative weights of the ranking score's parts; only their ratios matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScoreWeights {
    /// Weight of a low price.
    pub price: u32,
    /// Weight of a low measured latency.
    pub latency: u32,
    /// Weight of a low load.
    pub load: u32,
    /// Weight of a good success history.
    pub reliability: u32,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            price: 40,
            latency: 30,
            load: 15,
            reliability: 15,
        }
    }
}

/// How to pick a host for a job: the seed's `selectOptimalNode` criteria.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectionCriteria {
    /// The filter: model, token, price and latency limits.
    pub query: ProviderQuery,
    /// The score's weights.
    pub weights: ScoreWeights,
    /// Hosts not to pick (e.g. ones that already failed this job).
    pub exclude: Vec<NodePeerId>,
}

impl SelectionCriteria {
    /// Criteria with default weights and no exclusions.
    pub fn new(query: ProviderQuery) -> Self {
        Self {
            query,
            weights: ScoreWeights::default(),
            exclude: Vec::new(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn caps(model: &str, price: u64) -> NodeCapabilities {
        NodeCapabilities {
            peer_id: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                .parse()
                .unwrap(),
            eth_address: Address::repeat_byte(7),
            models: vec![ModelId::from_name(model)],
            prices: vec![TokenPrice {
                token: Address::zero(),
                price_per_token: TokenAmount::from_base_units(price),
            }],
            max_tokens: 512,
            current_load: 1,
            max_concurrent: 4,
            queue_depth: 1,
            version: "fabstir-node/0.1.0".into(),
        }
    }

    #[test]
    fn query_filters_by_model_token_price_latency() {
        let node = DiscoveredNode {
            capabilities: caps("a", 10),
            addresses: vec![],
            latency: Duration::from_millis(20),
            history: NodeHistory::default(),
        };
        let mut query = ProviderQuery::new(ModelId::from_name("a"), Address::zero());
        assert!(query.matches(&node));
        query.max_price = Some(TokenAmount::from_base_units(9u64));
        assert!(!query.matches(&node));
        query.max_price = Some(TokenAmount::from_base_units(10u64));
        query.max_latency = Some(Duration::from_millis(19));
        assert!(!query.matches(&node));
        query.max_latency = None;
        query.token = Address::repeat_byte(1);
        assert!(!query.matches(&node), "token not accepted");
        let other = ProviderQuery::new(ModelId::from_name("b"), Address::zero());
        assert!(!other.matches(&node));
    }

    #[test]
    fn load_and_history_scores() {
        assert_eq!(caps("a", 1).load_bps(), 5_000);
        assert_eq!(NodeHistory::default().success_bps(), 5_000);
        let good = NodeHistory {
            successes: 98,
            failures: 0,
        };
        assert_eq!(good.success_bps(), 9_900);
        let bad = NodeHistory {
            successes: 0,
            failures: 8,
        };
        assert_eq!(bad.success_bps(), 1_000);
    }
}
