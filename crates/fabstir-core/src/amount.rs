//! Exact token amounts in base units, with decimal parsing and formatting. No floats.

use std::fmt;

use ethers_core::types::U256;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The largest number of decimals a token may have: 10^77 is the largest power of ten in
/// 256 bits.
pub const MAX_DECIMALS: u8 = 77;

/// An amount of some token in its base units (wei for ETH, 10^-6 USDC for USDC).
///
/// The amount does not know its token; parsing and formatting take the token's decimals.
/// Arithmetic is checked: helpers return `None` on overflow rather than wrapping.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct TokenAmount(pub U256);

impl TokenAmount {
    /// Zero base units.
    pub const ZERO: Self = Self(U256::zero());

    /// An amount of `units` base units.
    pub fn from_base_units(units: impl Into<U256>) -> Self {
        Self(units.into())
    }

    /// The base units.
    pub fn base_units(self) -> U256 {
        self.0
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Parses a decimal string such as `"1.5"` for a token with `decimals` decimals
    /// (`"1.5"` USDC = 1_500_000 base units).
    ///
    /// Accepted: digits with at most one `.`, optional surrounding whitespace, `_` between
    /// digits as a separator. Rejected with an error: an empty string, a sign, exponents, more
    /// fractional digits than `decimals`, and values that overflow 256 bits.
    pub fn parse(input: &str, decimals: u8) -> Result<Self> {
        let invalid = |reason| Error::InvalidAmount {
            input: input.to_owned(),
            reason,
        };
        if decimals > MAX_DECIMALS {
            return Err(invalid("the token has too many decimals"));
        }
        let text = input.trim();
        if text.starts_with('-') {
            return Err(invalid("negative amounts are not allowed"));
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(invalid("no digits"));
        }
        let digits = |part: &str| -> Result<String> {
            if part.starts_with('_') || part.ends_with('_') || part.contains("__") {
                return Err(invalid("misplaced digit separator"));
            }
            let clean: String = part.chars().filter(|c| *c != '_').collect();
            if clean.chars().all(|c| c.is_ascii_digit()) {
                Ok(clean)
            } else {
                Err(invalid("only digits and one decimal point are allowed"))
            }
        };
        let whole = digits(whole)?;
        let frac = digits(frac)?;
        let frac = frac.trim_end_matches('0');
        if frac.len() > usize::from(decimals) {
            return Err(Error::TooManyDecimals {
                input: input.to_owned(),
                decimals,
            });
        }
        let overflow = || Error::AmountOverflow {
            input: input.to_owned(),
        };
        let scale = U256::from(10u8).pow(U256::from(decimals));
        let whole = parse_u256(&whole).ok_or_else(overflow)?;
        let frac_scale = U256::from(10u8).pow(U256::from(usize::from(decimals) - frac.len()));
        let frac = parse_u256(frac).ok_or_else(overflow)? * frac_scale;
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac))
            .map(Self)
            .ok_or_else(overflow)
    }

    /// Formats the amount with the shortest exact decimal form: `1500000` base units of a
    /// 6-decimal token is `"1.5"`, `2000000` is `"2"`.
    pub fn format(self, decimals: u8) -> String {
        self.format_with_min_fraction(decimals, 0)
    }

    /// Formats exactly, keeping at least `min_fraction` fractional digits (capped at
    /// `decimals`): with 2, `1500000` USDC base units is `"1.50"`. Digits are never dropped.
    pub fn format_with_min_fraction(self, decimals: u8, min_fraction: u8) -> String {
        let decimals = usize::from(decimals.min(MAX_DECIMALS));
        let digits = self.0.to_string();
        let padded = if digits.len() <= decimals {
            format!("{}{}", "0".repeat(decimals + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (whole, frac) = padded.split_at(padded.len() - decimals);
        let keep = usize::from(min_fraction).min(decimals);
        let mut frac = frac.trim_end_matches('0').to_owned();
        while frac.len() < keep {
            frac.push('0');
        }
        if frac.is_empty() {
            whole.to_owned()
        } else {
            format!("{whole}.{frac}")
        }
    }

    /// A value that displays as `"1.50 USDC"` (at least two fractional digits, as people
    /// write money).
    pub fn display(self, decimals: u8, symbol: &str) -> impl fmt::Display + '_ {
        DisplayAmount {
            amount: self,
            decimals,
            symbol,
        }
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, or `None` when it would go below zero.
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }

    /// `self * factor`, or `None` on overflow (e.g. price per token times tokens).
    pub fn checked_mul(self, factor: impl Into<U256>) -> Option<Self> {
        self.0.checked_mul(factor.into()).map(Self)
    }
}

impl From<U256> for TokenAmount {
    fn from(value: U256) -> Self {
        Self(value)
    }
}

struct DisplayAmount<'a> {
    amount: TokenAmount,
    decimals: u8,
    symbol: &'a str,
}

impl fmt::Display for DisplayAmount<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.amount.format_with_min_fraction(self.decimals, 2);
        write!(f, "{text} {}", self.symbol)
    }
}

/// Parses a non-empty string of ASCII digits, `None` on overflow. An empty string is zero.
fn parse_u256(digits: &str) -> Option<U256> {
    let ten = U256::from(10u8);
    digits.bytes().try_fold(U256::zero(), |acc, b| {
        acc.checked_mul(ten)?.checked_add(U256::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usdc_examples() {
        for (text, base) in [
            ("1.5", 1_500_000u64),
            ("0.000001", 1),
            ("  42 ", 42_000_000),
            (".5", 500_000),
            ("5.", 5_000_000),
            ("1_000.25", 1_000_250_000),
            ("1.500000000", 1_500_000),
        ] {
            assert_eq!(
                TokenAmount::parse(text, 6).unwrap(),
                TokenAmount::from_base_units(base),
                "{text:?}"
            );
        }
        assert_eq!(TokenAmount::from_base_units(1_500_000u64).format(6), "1.5");
        assert_eq!(TokenAmount::from_base_units(2_000_000u64).format(6), "2");
        assert_eq!(TokenAmount::from_base_units(1u64).format(6), "0.000001");
        assert_eq!(TokenAmount::ZERO.format(6), "0");
    }

    #[test]
    fn eth_examples() {
        let one_eth = U256::exp10(18);
        assert_eq!(TokenAmount::parse("1", 18).unwrap().0, one_eth);
        assert_eq!(
            TokenAmount::parse("0.000000000000000001", 18).unwrap().0,
            U256::one()
        );
        assert_eq!(TokenAmount(one_eth * 3 / 2).format(18), "1.5");
    }

    #[test]
    fn display_uses_two_decimals_for_money() {
        let need = TokenAmount::from_base_units(1_500_000u64);
        let have = TokenAmount::from_base_units(200_000u64);
        assert_eq!(
            format!(
                "need {}, have {}",
                need.display(6, "USDC"),
                have.display(6, "USDC")
            ),
            "need 1.50 USDC, have 0.20 USDC"
        );
        assert_eq!(
            TokenAmount::from_base_units(1_234_567u64)
                .display(6, "USDC")
                .to_string(),
            "1.234567 USDC"
        );
        assert_eq!(
            TokenAmount::from_base_units(7u64)
                .display(0, "X")
                .to_string(),
            "7 X"
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "", " ", ".", "-1", "+1", "1e6", "1.2.3", "abc", "1,5", "_1", "1__0", "0x10", "1. 5",
        ] {
            assert!(
                TokenAmount::parse(bad, 6).is_err(),
                "{bad:?} must be rejected"
            );
        }
        assert!(matches!(
            TokenAmount::parse("1.0000001", 6),
            Err(Error::TooManyDecimals { decimals: 6, .. })
        ));
        let max = U256::MAX.to_string();
        assert_eq!(TokenAmount::parse(&max, 0).unwrap().0, U256::MAX);
        assert!(matches!(
            TokenAmount::parse(&format!("{max}0"), 0),
            Err(Error::AmountOverflow { .. })
        ));
        assert!(matches!(
            TokenAmount::parse(&max, 1),
            Err(Error::AmountOverflow { .. })
        ));
        assert!(TokenAmount::parse("1", 78).is_err());
    }

    #[test]
    fn checked_arithmetic() {
        let a = TokenAmount::from_base_units(5u64);
        assert_eq!(a.checked_sub(TokenAmount::from_base_units(6u64)), None);
        assert_eq!(
            a.checked_mul(3u64),
            Some(TokenAmount::from_base_units(15u64))
        );
        assert_eq!(TokenAmount(U256::MAX).checked_add(a), None);
        assert_eq!(TokenAmount(U256::MAX).checked_mul(2u64), None);
    }

    fn any_u256() -> impl Strategy<Value = U256> {
        prop::array::uniform4(any::<u64>()).prop_map(U256)
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(units in any_u256(), decimals in prop::sample::select(vec![0u8, 2, 6, 8, 18, 24])) {
            let amount = TokenAmount(units);
            let text = amount.format(decimals);
            prop_assert_eq!(TokenAmount::parse(&text, decimals).unwrap(), amount);
            let padded = amount.format_with_min_fraction(decimals, 2);
            prop_assert_eq!(TokenAmount::parse(&padded, decimals).unwrap(), amount);
        }

        #[test]
        fn parse_then_format_is_canonical(whole in 0u64..1_000_000_000, frac in "[0-9]{0,6}") {
            let text = if frac.is_empty() { whole.to_string() } else { format!("{whole}.{frac}") };
            let amount = TokenAmount::parse(&text, 6).unwrap();
            let trimmed = frac.trim_end_matches('0');
            let expected = if trimmed.is_empty() { whole.to_string() } else { format!("{whole}.{trimmed}") };
            prop_assert_eq!(amount.format(6), expected);
        }

        #[test]
        fn too_many_decimals_always_rejected(frac in "[0-9]{0,18}[1-9]") {
            let decimals = 6u8;
            let text = format!("1.{frac}");
            let result = TokenAmount::parse(&text, decimals);
            if frac.len() > usize::from(decimals) {
                let is_too_many = matches!(result, Err(Error::TooManyDecimals { .. }));
                prop_assert!(is_too_many);
            } else {
                prop_assert!(result.is_ok());
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(text in "\\PC{0,40}") {
            let _ = TokenAmount::parse(&text, 18);
        }
    }
}
