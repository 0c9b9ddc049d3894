//! Reading configuration files: TOML text into any layer's configuration type, with one
//! error shape. Each layer owns its configuration struct (the SDK's `SdkConfig`, the node's
//! `NodeConfig`, p2p's `PoolConfig`); this module is what they share.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Parses TOML into `T`; `what` names the configuration in the error ("node TOML").
pub fn from_toml<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| Error::Config(format!("invalid {what}: {e}")))
}

/// `value` as TOML.
pub fn to_toml<T: Serialize>(value: &T) -> Result<String> {
    toml::to_string(value).map_err(|e| Error::Config(e.to_string()))
}

/// Reads the TOML file at `path` into `T`.
pub fn read_toml<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
    from_toml(&text, what)
}

/// A comma-separated list from an environment variable, trimmed, empty items dropped.
pub fn env_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
    }

    #[test]
    fn toml_round_trip_and_errors() {
        let s: Sample = from_toml("name = \"a\"", "sample").unwrap();
        assert_eq!(
            from_toml::<Sample>(&to_toml(&s).unwrap(), "sample").unwrap(),
            s
        );
        let err = from_toml::<Sample>("other = 1", "sample TOML").unwrap_err();
        assert!(err.to_string().contains("invalid sample TOML"), "{err}");
        let missing = read_toml::<Sample>(Path::new("/nonexistent/x.toml"), "sample");
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("reading /nonexistent/x.toml")
        );
        assert_eq!(env_list(" a, b,,"), ["a", "b"]);
    }
}
