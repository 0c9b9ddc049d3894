//! The SDK's configuration: where the chain and the contracts are, how to join the network,
//! and the limits and timeouts of discovery, pooling and jobs. Loadable from TOML and
//! overridable from the environment; every field has a default. The SDK composes the layers'
//! own settings ([`PoolConfig`] is the p2p layer's) and hands each layer its part
//! ([`SdkConfig::p2p_config`]).

use std::path::Path;
use std::time::Duration;

use fabstir_core::config::{env_list, from_toml, read_toml, to_toml};
use fabstir_core::deployment::ContractAddresses;
use fabstir_core::{Error, Result};
use fabstir_p2p::{Multiaddr, P2pConfig, PoolConfig};
use serde::{Deserialize, Serialize};

/// Configuration of the headless SDK (and of anything that acts as a client).
///
/// In TOML, durations are written like `"5m"` or `"500ms"`:
///
/// ```toml
/// rpc_url = "http://127.0.0.1:8545"
/// chain_id = 31337
/// bootstrap_peers = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW..."]
/// discovery_ttl = "5m"
///
/// [contracts]
/// job_marketplace = "0x..."
/// node_registry = "0x..."
///
/// [pool]
/// max_connections = 50
/// idle_timeout = "5m"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdkConfig {
    /// JSON-RPC endpoint of the chain.
    pub rpc_url: String,
    /// Chain id the signer and contracts must be on.
    pub chain_id: u64,
    /// Contract addresses.
    pub contracts: ContractAddresses,
    /// Multiaddresses (with `/p2p/<peer id>`) of bootstrap nodes.
    pub bootstrap_peers: Vec<String>,
    /// How long discovered providers are cached.
    #[serde(with = "humantime_serde")]
    pub discovery_ttl: Duration,
    /// Connection pool limits.
    pub pool: PoolConfig,
    /// Timeouts of the job lifecycle.
    pub timeouts: Timeouts,
    /// How many hosts a job is tried on before it fails.
    pub max_attempts: u32,
    /// How often the chain is polled while waiting (receipts, claims, settlement); a local
    /// chain that mines at once wants a few milliseconds, a public one about a block time.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The largest credit window accepted from a host, in tokens: the most a host may stream
    /// ahead of this client's newest receipt, so the most the client can pay for without
    /// having received it (a window's worth at the job's price).
    #[serde(default = "default_max_credit_window")]
    pub max_credit_window: u32,
}

fn default_max_credit_window() -> u32 {
    fabstir_p2p::StreamConfig::default().max_credit_window
}

/// The seed's headless configuration is the SDK configuration.
pub type HeadlessConfig = SdkConfig;

impl Default for SdkConfig {
    fn default() -> Self {
        Self {
            rpc_url: "http://127.0.0.1:8545".to_owned(),
            chain_id: 31_337,
            contracts: ContractAddresses::default(),
            bootstrap_peers: Vec::new(),
            discovery_ttl: Duration::from_secs(5 * 60),
            pool: PoolConfig::default(),
            timeouts: Timeouts::default(),
            max_attempts: 3,
            poll_interval: Duration::from_millis(500),
            max_credit_window: default_max_credit_window(),
        }
    }
}

/// Timeouts of the job lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Dialing a peer.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// One request-response exchange (capabilities, quote).
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// Waiting for the host to claim a posted job.
    #[serde(with = "humantime_serde")]
    pub claim: Duration,
    /// No token for this long, once tokens flow, means the stream stalled. (The first token
    /// may wait for a slot in the host's queue, up to the `claim` timeout.)
    #[serde(with = "humantime_serde")]
    pub stream_stall: Duration,
    /// How long after posting a job's deadline is set.
    #[serde(with = "humantime_serde")]
    pub job_deadline: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(10),
            claim: Duration::from_secs(30),
            stream_stall: Duration::from_secs(5),
            job_deadline: Duration::from_secs(10 * 60),
        }
    }
}

/// Environment variables that override configuration, and the field each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("FABSTIR_RPC_URL", "rpc_url"),
    ("FABSTIR_CHAIN_ID", "chain_id"),
    (
        "FABSTIR_BOOTSTRAP_PEERS",
        "bootstrap_peers (comma-separated)",
    ),
    ("FABSTIR_JOB_MARKETPLACE", "contracts.job_marketplace"),
    ("FABSTIR_NODE_REGISTRY", "contracts.node_registry"),
    ("FABSTIR_DISCOVERY_TTL", "discovery_ttl (e.g. 5m)"),
];

impl SdkConfig {
    /// Parses TOML; missing fields take their defaults, unknown fields are errors.
    pub fn from_toml(text: &str) -> Result<Self> {
        from_toml(text, "TOML")
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        to_toml(self)
    }

    /// Reads a TOML file, then applies the process environment ([`ENV_VARS`]).
    pub fn load(path: &Path) -> Result<Self> {
        let mut config: Self = read_toml(path, "TOML")?;
        config.apply_env(std::env::vars())?;
        Ok(config)
    }

    /// Applies overrides from `(name, value)` pairs such as `std::env::vars()`; names not in
    /// [`ENV_VARS`] are ignored.
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        let bad = |name: &str, value: &str, why: String| {
            Error::Config(format!("{name}={value:?}: {why}"))
        };
        for (name, value) in vars {
            match name.as_str() {
                "FABSTIR_RPC_URL" => self.rpc_url = value,
                "FABSTIR_CHAIN_ID" => {
                    self.chain_id = value
                        .trim()
                        .parse()
                        .map_err(|e| bad(&name, &value, format!("{e}")))?;
                }
                "FABSTIR_BOOTSTRAP_PEERS" => {
                    self.bootstrap_peers = env_list(&value);
                }
                "FABSTIR_JOB_MARKETPLACE" | "FABSTIR_NODE_REGISTRY" => {
                    let address = value
                        .trim()
                        .parse()
                        .map_err(|e| bad(&name, &value, format!("{e}")))?;
                    match name.as_str() {
                        "FABSTIR_JOB_MARKETPLACE" => self.contracts.job_marketplace = address,
                        _ => self.contracts.node_registry = address,
                    }
                }
                "FABSTIR_DISCOVERY_TTL" => {
                    self.discovery_ttl = humantime_serde::re::humantime::parse_duration(&value)
                        .map_err(|e| bad(&name, &value, e.to_string()))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks what can be checked without a network: contract addresses set, limits non-zero.
    pub fn validate(&self) -> Result<()> {
        self.contracts.validate()?;
        if self.pool.max_connections == 0 {
            return Err(Error::Config(
                "pool.max_connections must be at least 1".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        if self.rpc_url.trim().is_empty() {
            return Err(Error::Config("rpc_url is empty".into()));
        }
        Ok(())
    }

    /// The network layer's settings for a client: chain id, marketplace, bootstrap peers,
    /// pool, discovery TTL and timeouts from this configuration, the rest from `base`. A
    /// bootstrap address that does not parse is an error.
    pub fn p2p_config(&self, base: P2pConfig) -> Result<P2pConfig> {
        let bootstrap_peers = self
            .bootstrap_peers
            .iter()
            .map(|s| {
                s.parse::<Multiaddr>()
                    .map_err(|e| Error::Config(format!("bootstrap peer {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(P2pConfig {
            bootstrap_peers,
            chain_id: self.chain_id,
            marketplace: self.contracts.job_marketplace,
            pool: self.pool,
            discovery_ttl: self.discovery_ttl,
            request_timeout: self.timeouts.request,
            connect_timeout: self.timeouts.connect,
            stream: fabstir_p2p::StreamConfig {
                max_credit_window: self.max_credit_window,
                ..base.stream
            },
            ..base
        })
    }
}

#[cfg(test)]
mod tests {
    use fabstir_core::primitives::Address;

    use super::*;

    #[test]
    fn defaults_follow_the_seed() {
        let c = SdkConfig::default();
        assert_eq!(c.discovery_ttl, Duration::from_secs(300));
        assert_eq!(c.pool.max_connections, 50);
        assert_eq!(c.pool.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.timeouts.stream_stall, Duration::from_secs(5));
    }

    #[test]
    fn toml_with_partial_fields_and_durations() {
        let text = r#"
            rpc_url = "http://127.0.0.1:9545"
            chain_id = 84532
            bootstrap_peers = ["/ip4/127.0.0.1/tcp/4001"]
            discovery_ttl = "90s"

            [contracts]
            job_marketplace = "0x0101010101010101010101010101010101010101"
            node_registry = "0x0303030303030303030303030303030303030303"

            [pool]
            idle_timeout = "1m 30s"
        "#;
        let c = SdkConfig::from_toml(text).unwrap();
        assert_eq!(c.chain_id, 84_532);
        assert_eq!(c.discovery_ttl, Duration::from_secs(90));
        assert_eq!(c.pool.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.pool.max_connections, 50, "unset fields keep defaults");
        assert_eq!(c.contracts.node_registry, Address::repeat_byte(3));
        c.validate().unwrap();
        let again = SdkConfig::from_toml(&c.to_toml().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(SdkConfig::from_toml("rpc = 1").is_err());
        assert!(SdkConfig::from_toml("discovery_ttl = \"soon\"").is_err());
        let err = SdkConfig::default().validate().unwrap_err();
        assert!(err.to_string().contains("job_marketplace"), "{err}");
    }

    #[test]
    fn environment_overrides() {
        let mut c = SdkConfig::default();
        let vars = [
            ("FABSTIR_RPC_URL", "http://10.0.0.1:8545"),
            ("FABSTIR_CHAIN_ID", "5"),
            (
                "FABSTIR_BOOTSTRAP_PEERS",
                "/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2,",
            ),
            (
                "FABSTIR_NODE_REGISTRY",
                "0x0303030303030303030303030303030303030303",
            ),
            ("FABSTIR_DISCOVERY_TTL", "2m"),
            ("UNRELATED", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        c.apply_env(vars).unwrap();
        assert_eq!(c.rpc_url, "http://10.0.0.1:8545");
        assert_eq!(c.chain_id, 5);
        assert_eq!(c.bootstrap_peers.len(), 2);
        assert_eq!(c.contracts.node_registry, Address::repeat_byte(3));
        assert_eq!(c.discovery_ttl, Duration::from_secs(120));
        let bad = [("FABSTIR_CHAIN_ID".to_owned(), "five".to_owned())];
        assert!(c.apply_env(bad).is_err());
    }

    #[test]
    fn p2p_config_maps_over() {
        let mut sdk = SdkConfig {
            bootstrap_peers: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            ..SdkConfig::default()
        };
        let config = sdk.p2p_config(P2pConfig::default()).unwrap();
        assert_eq!(config.bootstrap_peers.len(), 1);
        assert_eq!(config.discovery_ttl, Duration::from_secs(300));
        assert_eq!(config.pool.max_connections, 50);
        assert_eq!(P2pConfig::default().listen_addrs.len(), 3);
        sdk.bootstrap_peers = vec!["not an address".into()];
        assert!(sdk.p2p_config(P2pConfig::default()).is_err());
    }
}
