//! The payment tokens known on one chain.

use ethers::types::Address;
use fabstir_core::token::base_sepolia;
use fabstir_core::{Deployment, PaymentToken};

use crate::{Error, Result};

/// A token the registry knows, as configured. What the chain says about it (decimals,
/// symbol, permit support) is read once and checked against this by the
/// [`PaymentManager`](crate::PaymentManager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// The token: kind, symbol, decimals.
    pub token: PaymentToken,
}

/// The payment tokens of one chain: ETH, USDC, FAB, USDT, DAI where they exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRegistry {
    chain_id: u64,
    entries: Vec<TokenEntry>,
}

impl TokenRegistry {
    /// A registry of explicit tokens.
    pub fn new(chain_id: u64, tokens: impl IntoIterator<Item = PaymentToken>) -> Self {
        Self {
            chain_id,
            entries: tokens
                .into_iter()
                .map(|token| TokenEntry { token })
                .collect(),
        }
    }

    /// The seed's Base Sepolia table: ETH, USDC (6 decimals), FAB (18).
    pub fn base_sepolia() -> Self {
        Self::new(base_sepolia::CHAIN_ID, base_sepolia::all())
    }

    /// The tokens of a deployment (a local chain's test tokens, say).
    pub fn from_deployment(deployment: &Deployment) -> Self {
        Self::new(deployment.chain_id, deployment.tokens.iter().cloned())
    }

    /// The chain these tokens live on.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Every known token.
    pub fn tokens(&self) -> impl Iterator<Item = &PaymentToken> {
        self.entries.iter().map(|e| &e.token)
    }

    /// The token with this symbol (case-insensitive).
    pub fn by_symbol(&self, symbol: &str) -> Option<&PaymentToken> {
        self.tokens()
            .find(|t| t.symbol.eq_ignore_ascii_case(symbol))
    }

    /// The token at this address (the zero address is ETH).
    pub fn by_address(&self, address: Address) -> Option<&PaymentToken> {
        self.tokens().find(|t| t.address() == address)
    }

    /// Resolves a symbol (`USDC`) or an address (`0x...`), or fails with
    /// [`Error::TokenNotAccepted`].
    pub fn resolve(&self, symbol_or_address: &str) -> Result<&PaymentToken> {
        let found = match symbol_or_address.parse::<Address>() {
            Ok(address) if symbol_or_address.starts_with("0x") => self.by_address(address),
            _ => self.by_symbol(symbol_or_address),
        };
        found.ok_or_else(|| Error::TokenNotAccepted(symbol_or_address.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_sepolia_resolves_symbols_and_addresses() {
        let registry = TokenRegistry::base_sepolia();
        assert_eq!(registry.chain_id(), 84_532);
        assert_eq!(registry.resolve("usdc").unwrap().decimals, 6);
        assert_eq!(registry.resolve("ETH").unwrap().decimals, 18);
        let fab = format!("{:#x}", base_sepolia::FAB);
        assert_eq!(registry.resolve(&fab).unwrap().symbol, "FAB");
        assert!(matches!(
            registry.resolve("DOGE"),
            Err(Error::TokenNotAccepted(_))
        ));
        assert!(
            registry
                .resolve("0x0000000000000000000000000000000000000001")
                .is_err()
        );
    }
}
