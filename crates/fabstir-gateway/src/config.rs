//! What the gateway pays with and how much it may spend.

use fabstir_core::TokenAmount;

/// The gateway's settings. Amounts are in the payment token's base units (the CLI parses
/// them from decimal text in the token's units).
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The payment token, by symbol (`USDC`, `ETH`) or address.
    pub token: String,
    /// Highest price per generated token the gateway accepts; hosts above it are not used.
    pub max_price: Option<TokenAmount>,
    /// Most one request may escrow (`max_tokens` x the host's price). A request whose every
    /// host costs more is refused before any transaction.
    pub max_per_request: Option<TokenAmount>,
    /// Most the gateway spends in one UTC day: what settled jobs paid (host and fee), plus the
    /// escrow of requests still running. Once reached, requests are refused before any
    /// transaction until the day ends.
    pub max_per_day: Option<TokenAmount>,
    /// `max_tokens` of a request that names none.
    pub default_max_tokens: u32,
    /// Model names listed by `GET /v1/models` when the network serves them. (Model ids on
    /// the network are hashes of their names, so the network cannot name its models itself;
    /// a request may still name any model, and is routed by that name.)
    pub models: Vec<String>,
    /// When set, every `/v1` request must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            token: "USDC".to_owned(),
            max_price: None,
            max_per_request: None,
            max_per_day: None,
            default_max_tokens: 128,
            models: Vec::new(),
            api_key: None,
        }
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("token", &self.token)
            .field("max_price", &self.max_price)
            .field("max_per_request", &self.max_per_request)
            .field("max_per_day", &self.max_per_day)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("models", &self.models)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish()
    }
}
