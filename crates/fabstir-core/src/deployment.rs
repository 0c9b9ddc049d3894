//! Where the contracts live on one chain: addresses, payment tokens and the chain id, saved
//! to and loaded from JSON so that nodes, clients and tools share one description.

use std::path::Path;

use ethers_core::types::Address;
use serde::{Deserialize, Serialize};

use crate::token::PaymentToken;
use crate::{Error, Result};

/// The addresses of the three Fabstir contracts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContractAddresses {
    /// JobMarketplace: posts, claims, settles jobs, and holds their funds.
    pub job_marketplace: Address,
    /// NodeRegistry: hosts, stakes, models, prices.
    pub node_registry: Address,
}

impl ContractAddresses {
    /// Fails when an address was left unset (zero).
    pub fn validate(&self) -> Result<()> {
        for (name, address) in [
            ("job_marketplace", self.job_marketplace),
            ("node_registry", self.node_registry),
        ] {
            if address.is_zero() {
                return Err(Error::Config(format!("contract address {name} is not set")));
            }
        }
        Ok(())
    }
}

/// A complete deployment on one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The chain id the contracts are deployed on.
    pub chain_id: u64,
    /// Contract addresses.
    pub contracts: ContractAddresses,
    /// Payment tokens the marketplace accepts, ETH included.
    pub tokens: Vec<PaymentToken>,
    /// The staking token of the NodeRegistry (FAB).
    pub stake_token: Address,
    /// Where protocol fees go.
    pub treasury: Address,
    /// The block the deployment finished in: event queries start there.
    #[serde(default)]
    pub start_block: u64,
}

impl Deployment {
    /// The accepted token with this symbol (case-insensitive).
    pub fn token(&self, symbol: &str) -> Option<&PaymentToken> {
        self.tokens
            .iter()
            .find(|t| t.symbol.eq_ignore_ascii_case(symbol))
    }

    /// The accepted token at this address (the zero address is ETH).
    pub fn token_by_address(&self, address: Address) -> Option<&PaymentToken> {
        self.tokens.iter().find(|t| t.address() == address)
    }

    /// Parses a deployment from JSON and checks it.
    pub fn from_json(text: &str) -> Result<Self> {
        let deployment: Self = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("invalid deployment JSON: {e}")))?;
        deployment.contracts.validate()?;
        Ok(deployment)
    }

    /// The deployment as pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// Writes the deployment file (atomically: a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Deployment {
        Deployment {
            chain_id: 31_337,
            contracts: ContractAddresses {
                job_marketplace: Address::repeat_byte(1),
                node_registry: Address::repeat_byte(3),
            },
            tokens: vec![
                PaymentToken::eth(),
                PaymentToken::erc20(Address::repeat_byte(4), "USDC", 6),
            ],
            stake_token: Address::repeat_byte(5),
            treasury: Address::repeat_byte(6),
            start_block: 1,
        }
    }

    #[test]
    fn json_round_trip_and_lookup() {
        let d = sample();
        let back = Deployment::from_json(&d.to_json()).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.token("usdc").unwrap().decimals, 6);
        assert!(back.token_by_address(Address::zero()).unwrap().is_native());
        assert!(back.token("DAI").is_none());
    }

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("fabstir-core-dep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("deployment.json");
        sample().save(&path).unwrap();
        assert_eq!(Deployment::load(&path).unwrap(), sample());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unset_addresses_and_bad_json_are_errors() {
        let mut d = sample();
        d.contracts.node_registry = Address::zero();
        let err = Deployment::from_json(&d.to_json()).unwrap_err();
        assert!(err.to_string().contains("node_registry"), "{err}");
        assert!(Deployment::from_json("{").is_err());
        assert!(Deployment::load(Path::new("/nonexistent/deployment.json")).is_err());
    }
}
