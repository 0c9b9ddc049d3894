//! The node's configuration: a TOML file, overridden by environment variables and flags.
//!
//! ```toml
//! rpc_url = "http://127.0.0.1:8545"
//! deployment = "devnet/deployment.json"
//! host_key_file = "devnet/host-0.key"      # or FABSTIR_HOST_KEY in the environment
//! listen = ["/ip4/127.0.0.1/tcp/0"]
//! bootstrap_peers = []
//! storage = "devnet/host-0"
//! max_concurrent = 2
//! queue = 8
//! metrics = "127.0.0.1:0"
//!
//! [[models]]
//! name = "stories260K"
//! backend = { embedded = { checkpoint = "models/tinyllamas/stories260K.bin" } }
//! prices = { ETH = "0.000000001", USDC = "0.0001" }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Everything a node needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// JSON-RPC endpoint of the chain.
    #[serde(default = "default_rpc")]
    pub rpc_url: String,
    /// The deployment file (contract and token addresses, chain id).
    pub deployment: PathBuf,
    /// A file holding the host's Ethereum private key (hex). `FABSTIR_HOST_KEY` in the
    /// environment takes precedence. The key is never logged.
    #[serde(default)]
    pub host_key_file: Option<PathBuf>,
    /// libp2p listen addresses.
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    /// Bootstrap peers (multiaddresses ending in `/p2p/<peer id>`).
    #[serde(default)]
    pub bootstrap_peers: Vec<String>,
    /// Where results and the node's libp2p key are kept.
    pub storage: PathBuf,
    /// Models served.
    pub models: Vec<ModelConfig>,
    /// Jobs run at once.
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
    /// Jobs waiting for a slot before new ones are refused.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Most tokens generated for one job.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Address of the Prometheus `/metrics` endpoint; `None` disables it.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// FAB staked at registration, in FAB (`"100"`); the registry's minimum when unset.
    #[serde(default)]
    pub stake: Option<String>,
    /// How often the chain is polled for events.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a quote holds.
    #[serde(default = "default_quote_ttl", with = "humantime_serde")]
    pub quote_validity: Duration,
    /// The least time before a job's deadline to take it (to generate and settle).
    #[serde(default = "default_min_time_left", with = "humantime_serde")]
    pub min_time_left: Duration,
    /// The credit window in tokens: the most streamed ahead of the client's newest receipt
    /// (what the host risks per job); sized above tokens/s x round trip so it never throttles.
    #[serde(default = "default_credit_window")]
    pub credit_window: u32,
    /// How long the host waits for a receipt while the window is full before it ends the
    /// stream (`Unacknowledged`) and settles for what was receipted.
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// A session is settled on chain (in part) once this many tokens are receipted since its
    /// last settlement; it is always settled in full when it closes.
    #[serde(default = "default_session_settle_tokens")]
    pub session_settle_tokens: u64,
    /// A session whose client sent no prompt for this long is closed with its newest receipt
    /// (the client may have gone; the rest of its deposit goes back to it).
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub session_idle_close: Duration,
}

/// One served model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name; its id on chain and in the DHT is `keccak256(name)`.
    pub name: String,
    /// Where inference runs.
    pub backend: BackendConfig,
    /// Price per generated token by payment token symbol, in human units (`"0.0001"` USDC).
    pub prices: BTreeMap<String, String>,
}

/// Where a model runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BackendConfig {
    /// The embedded llama2.c engine.
    Embedded {
        /// The checkpoint file.
        checkpoint: PathBuf,
        /// The tokenizer file; without it tokens are reported as ids.
        #[serde(default)]
        tokenizer: Option<PathBuf>,
    },
    /// An OpenAI-compatible server.
    Openai {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
        /// The server's model name.
        model: String,
    },
}

fn default_rpc() -> String {
    "http://127.0.0.1:8545".into()
}
fn default_listen() -> Vec<String> {
    vec![
        "/ip4/0.0.0.0/tcp/0".into(),
        "/ip4/0.0.0.0/udp/0/quic-v1".into(),
        "/ip4/0.0.0.0/tcp/0/ws".into(),
    ]
}
fn default_concurrency() -> usize {
    2
}
fn default_queue() -> usize {
    16
}
fn default_max_tokens() -> u32 {
    1024
}
fn default_poll() -> Duration {
    Duration::from_millis(500)
}
fn default_quote_ttl() -> Duration {
    Duration::from_secs(120)
}

fn default_session_settle_tokens() -> u64 {
    10_000
}

fn default_session_idle() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_credit_window() -> u32 {
    fabstir_p2p::StreamConfig::default().credit_window
}

fn default_receipt_timeout() -> Duration {
    fabstir_p2p::StreamConfig::default().stall_timeout
}

fn default_min_time_left() -> Duration {
    Duration::from_secs(10)
}

/// Environment variables the node reads, and what each sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("FABSTIR_RPC_URL", "rpc_url"),
    (
        "FABSTIR_HOST_KEY",
        "the host's private key (hex); never logged",
    ),
    (
        "FABSTIR_BOOTSTRAP_PEERS",
        "bootstrap_peers (comma-separated)",
    ),
    ("FABSTIR_STORAGE", "storage"),
];

/// The node's own configuration error for a file that could not be read or parsed.
fn config_error(e: fabstir_core::Error) -> Error {
    match e {
        fabstir_core::Error::Config(message) => Error::Config(message),
        other => other.into(),
    }
}

impl NodeConfig {
    /// A configuration for `models`, with the deployment file and the storage folder named
    /// and every other field at the default a TOML file that leaves it out gets (listening on
    /// every interface, no bootstrap peers, the key from the environment, no metrics).
    pub fn new(deployment: PathBuf, storage: PathBuf, models: Vec<ModelConfig>) -> Self {
        Self {
            rpc_url: default_rpc(),
            deployment,
            host_key_file: None,
            listen: default_listen(),
            bootstrap_peers: Vec::new(),
            storage,
            models,
            max_concurrent: default_concurrency(),
            queue: default_queue(),
            max_tokens: default_max_tokens(),
            metrics: None,
            stake: None,
            poll_interval: default_poll(),
            quote_validity: default_quote_ttl(),
            min_time_left: default_min_time_left(),
            credit_window: default_credit_window(),
            receipt_timeout: default_receipt_timeout(),
            session_settle_tokens: default_session_settle_tokens(),
            session_idle_close: default_session_idle(),
        }
    }

    /// Parses TOML; paths stay as written (see [`Self::resolve_paths`]).
    pub fn from_toml(text: &str) -> Result<Self> {
        fabstir_core::config::from_toml(text, "node TOML").map_err(config_error)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        fabstir_core::config::to_toml(self).map_err(config_error)
    }

    /// Reads a TOML file; relative paths inside it are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let mut config: Self =
            fabstir_core::config::read_toml(path, "node TOML").map_err(config_error)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        Ok(config)
    }

    /// Makes relative paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.deployment);
        fix(&mut self.storage);
        if let Some(key) = &mut self.host_key_file {
            fix(key);
        }
        for model in &mut self.models {
            if let BackendConfig::Embedded {
                checkpoint,
                tokenizer,
            } = &mut model.backend
            {
                fix(checkpoint);
                if let Some(t) = tokenizer {
                    fix(t);
                }
            }
        }
    }

    /// Applies `(name, value)` overrides such as `std::env::vars()` ([`ENV_VARS`]; the key is
    /// read elsewhere and never stored here).
    pub fn apply_env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        for (name, value) in vars {
            match name.as_str() {
                "FABSTIR_RPC_URL" => self.rpc_url = value,
                "FABSTIR_STORAGE" => self.storage = PathBuf::from(value),
                "FABSTIR_BOOTSTRAP_PEERS" => {
                    self.bootstrap_peers = fabstir_core::config::env_list(&value);
                }
                _ => {}
            }
        }
    }

    /// Checks what can be checked before starting.
    pub fn validate(&self) -> Result<()> {
        if self.models.is_empty() {
            return Err(Error::Config("no models configured".into()));
        }
        if self.max_concurrent == 0 {
            return Err(Error::Config("max_concurrent must be at least 1".into()));
        }
        for model in &self.models {
            if model.prices.is_empty() {
                return Err(Error::Config(format!("model {} has no prices", model.name)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        deployment = "deployment.json"
        storage = "host-0"
        max_concurrent = 3

        [[models]]
        name = "stories260K"
        backend = { embedded = { checkpoint = "models/stories260K.bin" } }
        prices = { ETH = "0.000000001", USDC = "0.0001" }

        [[models]]
        name = "llama"
        backend = { openai = { url = "http://127.0.0.1:8080", model = "llama-3" } }
        prices = { USDC = "0.001" }
    "#;

    #[test]
    fn parses_with_defaults_and_resolves_paths() {
        let mut config = NodeConfig::from_toml(SAMPLE).unwrap();
        assert_eq!(config.max_concurrent, 3);
        assert_eq!(config.queue, 16);
        assert_eq!(config.rpc_url, "http://127.0.0.1:8545");
        assert_eq!(config.models.len(), 2);
        config.validate().unwrap();
        config.resolve_paths(Path::new("/etc/fabstir"));
        assert_eq!(config.deployment, Path::new("/etc/fabstir/deployment.json"));
        let BackendConfig::Embedded { checkpoint, .. } = &config.models[0].backend else {
            panic!("embedded");
        };
        assert_eq!(checkpoint, Path::new("/etc/fabstir/models/stories260K.bin"));
        let again = NodeConfig::from_toml(&config.to_toml().unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn new_gives_what_a_file_that_names_only_the_required_fields_gives() {
        let minimal = r#"
            deployment = "deployment.json"
            storage = "host"
            [[models]]
            name = "llama"
            backend = { openai = { url = "http://127.0.0.1:8080", model = "llama-3" } }
            prices = { USDC = "0.001" }
        "#;
        let parsed = NodeConfig::from_toml(minimal).unwrap();
        let built = NodeConfig::new(
            "deployment.json".into(),
            "host".into(),
            parsed.models.clone(),
        );
        assert_eq!(built, parsed);
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(NodeConfig::from_toml("deployment = 1").is_err());
        let mut config = NodeConfig::from_toml(SAMPLE).unwrap();
        config.models.clear();
        assert!(config.validate().is_err());
        let mut config = NodeConfig::from_toml(SAMPLE).unwrap();
        config.models[0].prices.clear();
        assert!(config.validate().is_err());
    }

    #[test]
    fn environment_overrides() {
        let mut config = NodeConfig::from_toml(SAMPLE).unwrap();
        config.apply_env([
            (
                "FABSTIR_RPC_URL".to_owned(),
                "http://127.0.0.1:9999".to_owned(),
            ),
            (
                "FABSTIR_BOOTSTRAP_PEERS".to_owned(),
                "/ip4/127.0.0.1/tcp/1,".to_owned(),
            ),
        ]);
        assert_eq!(config.rpc_url, "http://127.0.0.1:9999");
        assert_eq!(config.bootstrap_peers, vec!["/ip4/127.0.0.1/tcp/1"]);
    }
}

#[cfg(test)]
mod example {
    use super::*;

    #[test]
    fn the_example_configuration_loads_and_points_at_the_shipped_model() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("node.example.toml");
        let config = NodeConfig::load(&path).unwrap();
        config.validate().unwrap();
        let BackendConfig::Embedded {
            checkpoint,
            tokenizer,
        } = &config.models[0].backend
        else {
            panic!("the example serves the embedded model");
        };
        assert!(checkpoint.exists(), "{} exists", checkpoint.display());
        assert!(tokenizer.as_ref().is_some_and(|t| t.exists()));
        assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    }
}
