//! Payment tokens: native ETH or an ERC-20 by address, with symbol and decimals.

use std::fmt;

use ethers_core::types::Address;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::amount::TokenAmount;

/// A token a job can be paid in.
///
/// On chain, ETH is written as the zero address (the JobMarketplace's accepted-token list uses
/// the same convention); [`PaymentToken::address`] gives that form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PaymentToken {
    /// Native ETH or an ERC-20 contract.
    pub kind: TokenKind,
    /// Ticker symbol, e.g. `USDC`.
    pub symbol: String,
    /// Number of decimals of the base unit (18 for ETH, 6 for USDC).
    pub decimals: u8,
}

/// Where a token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "address")]
pub enum TokenKind {
    /// The chain's native currency, paid as `msg.value`.
    Native,
    /// An ERC-20 token at this address.
    Erc20(Address),
}

impl PaymentToken {
    /// Native ETH (18 decimals).
    pub fn eth() -> Self {
        Self {
            kind: TokenKind::Native,
            symbol: "ETH".to_owned(),
            decimals: 18,
        }
    }

    /// An ERC-20 token.
    pub fn erc20(address: Address, symbol: impl Into<String>, decimals: u8) -> Self {
        Self {
            kind: TokenKind::Erc20(address),
            symbol: symbol.into(),
            decimals,
        }
    }

    /// Whether this is the native currency.
    pub fn is_native(&self) -> bool {
        matches!(self.kind, TokenKind::Native)
    }

    /// The on-chain address: the ERC-20 contract, or the zero address for ETH.
    pub fn address(&self) -> Address {
        match self.kind {
            TokenKind::Native => Address::zero(),
            TokenKind::Erc20(address) => address,
        }
    }

    /// Parses a human amount of this token (`"1.5"`).
    pub fn parse_amount(&self, text: &str) -> Result<TokenAmount> {
        TokenAmount::parse(text, self.decimals)
    }

    /// Formats an amount of this token for people: `"1.50 USDC"`.
    pub fn format_amount(&self, amount: TokenAmount) -> String {
        amount.display(self.decimals, &self.symbol).to_string()
    }
}

impl fmt::Display for PaymentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TokenKind::Native => write!(f, "{}", self.symbol),
            TokenKind::Erc20(address) => write!(f, "{} ({address:#x})", self.symbol),
        }
    }
}

/// The seed's payment tokens on Base Sepolia (chain id 84532).
pub mod base_sepolia {
    use ethers_core::types::Address;

    use super::{PaymentToken, address_from_hex};

    /// Base Sepolia's chain id.
    pub const CHAIN_ID: u64 = 84_532;

    /// USDC on Base Sepolia (6 decimals).
    pub const USDC: Address = address_from_hex("036CbD53842c5426634e7929541eC2318f3dCF7e");

    /// FAB on Base Sepolia (18 decimals).
    pub const FAB: Address = address_from_hex("C78949004B4EB6dEf2D66e49Cd81231472612D62");

    /// USDC (6 decimals).
    pub fn usdc() -> PaymentToken {
        PaymentToken::erc20(USDC, "USDC", 6)
    }

    /// FAB (18 decimals).
    pub fn fab() -> PaymentToken {
        PaymentToken::erc20(FAB, "FAB", 18)
    }

    /// ETH (18 decimals).
    pub fn eth() -> PaymentToken {
        PaymentToken::eth()
    }

    /// Every payment token the seed lists for Base Sepolia.
    pub fn all() -> Vec<PaymentToken> {
        vec![eth(), usdc(), fab()]
    }
}

/// Parses 40 hex digits into an address at compile time (a bad literal fails the build).
const fn address_from_hex(digits: &str) -> Address {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit"),
        }
    }
    let bytes = digits.as_bytes();
    assert!(bytes.len() == 40, "an address has 40 hex digits");
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = nibble(bytes[2 * i]) << 4 | nibble(bytes[2 * i + 1]);
        i += 1;
    }
    ethers_core::types::H160(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_sepolia_table_matches_the_seed() {
        let usdc = base_sepolia::usdc();
        assert_eq!(
            format!("{:#x}", usdc.address()),
            "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
        );
        assert_eq!(usdc.decimals, 6);
        let fab = base_sepolia::fab();
        assert_eq!(
            format!("{:#x}", fab.address()),
            "0xc78949004b4eb6def2d66e49cd81231472612d62"
        );
        assert_eq!(fab.decimals, 18);
        assert_eq!(base_sepolia::eth().decimals, 18);
        assert_eq!(base_sepolia::eth().address(), Address::zero());
    }

    #[test]
    fn amounts_through_the_token() {
        let usdc = base_sepolia::usdc();
        let amount = usdc.parse_amount("1.5").unwrap();
        assert_eq!(amount, TokenAmount::from_base_units(1_500_000u64));
        assert_eq!(usdc.format_amount(amount), "1.50 USDC");
        assert!(usdc.parse_amount("0.0000001").is_err());
    }

    #[test]
    fn serde_forms() {
        let json = serde_json::to_string(&base_sepolia::usdc()).unwrap();
        assert!(json.contains("erc20"), "{json}");
        let back: PaymentToken = serde_json::from_str(&json).unwrap();
        assert_eq!(back, base_sepolia::usdc());
        let eth: PaymentToken =
            serde_json::from_str(&serde_json::to_string(&PaymentToken::eth()).unwrap()).unwrap();
        assert!(eth.is_native());
    }
}
