//! Conservation of funds on a [`LocalChain`]: the escrow holds exactly what open jobs and
//! credited refunds are owed, every test token's supply is held by known accounts, and a set of
//! accounts holds together what it held before, less the gas it paid.

use std::fmt;

use ethers::signers::Signer as _;
use ethers::types::{Address, U256};
use fabstir_core::TokenAmount;

use super::LocalChain;
use crate::bindings::test_usdc::TestUSDC;
use crate::error::Result;
use crate::manager::call;

/// A way in which funds are not conserved, found by [`LocalChain::imbalances`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imbalance {
    /// The escrow holds another amount of `token` than its open jobs and credits are owed.
    Escrow {
        /// The token (the zero address is ETH).
        token: Address,
        /// What the escrow holds.
        held: TokenAmount,
        /// What open jobs and credited refunds are owed.
        owed: TokenAmount,
    },
    /// The known accounts hold another amount of an ERC-20 than its total supply: tokens were
    /// created, lost or sent somewhere unknown.
    Supply {
        /// The token.
        token: Address,
        /// What the known accounts hold together.
        held: U256,
        /// The token's total supply.
        supply: U256,
    },
}

impl fmt::Display for Imbalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Escrow { token, held, owed } => write!(
                f,
                "escrow of token {token:#x} holds {held:?}, open jobs {owed:?}"
            ),
            Self::Supply {
                token,
                held,
                supply,
            } => write!(
                f,
                "token {token:#x}: known balances {held} differ from supply {supply}"
            ),
        }
    }
}

impl LocalChain {
    /// Every way funds are out of balance now: for each deployed token and each of
    /// `extra_tokens` (ERC-20s a test deployed), the marketplace must hold exactly the amounts
    /// of open jobs plus credits plus accrued fees; and each ERC-20's supply must be held by
    /// the dev accounts, the two contracts and the extra token contracts themselves.
    pub async fn imbalances(&self, extra_tokens: &[Address]) -> Result<Vec<Imbalance>> {
        let manager = &self.manager;
        let mut tokens: Vec<Address> = self.deployment.tokens.iter().map(|t| t.address()).collect();
        tokens.extend_from_slice(extra_tokens);
        let mut found = Vec::new();
        let totals = manager.open_escrow_totals().await?;
        for &token in &tokens {
            let held = manager.escrow_balance(token).await?;
            let owed = totals.get(&token).copied().unwrap_or_default();
            if held != owed {
                found.push(Imbalance::Escrow { token, held, owed });
            }
        }
        let contracts = self.deployment.contracts;
        let mut holders: Vec<Address> = self.anvil.wallets().iter().map(|w| w.address()).collect();
        holders.extend([contracts.node_registry, contracts.job_marketplace]);
        holders.extend_from_slice(extra_tokens);
        for &token in tokens.iter().filter(|t| !t.is_zero()) {
            let supply =
                call(TestUSDC::new(token, manager.provider().clone()).total_supply()).await?;
            let held = self.balances(token, &holders).await?.total();
            if held != supply {
                found.push(Imbalance::Supply {
                    token,
                    held,
                    supply,
                });
            }
        }
        Ok(found)
    }

    /// The conservation check a test ends with: panics naming every [`Self::imbalances`]
    /// entry, or when the balances cannot be read.
    pub async fn assert_conserved(&self, extra_tokens: &[Address]) {
        match self.imbalances(extra_tokens).await {
            Ok(found) => assert!(
                found.is_empty(),
                "funds are not conserved: {}",
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            Err(e) => panic!("the conservation check could not read the chain: {e}"),
        }
    }

    /// The balances of `token` (the zero address is ETH) of `accounts`, read now.
    pub async fn balances(&self, token: Address, accounts: &[Address]) -> Result<Balances> {
        let mut amounts = Vec::with_capacity(accounts.len());
        for &account in accounts {
            amounts.push((account, self.balance(token, account).await?));
        }
        Ok(Balances { token, amounts })
    }
    /// What `accounts` hold of `token` counting what the marketplace owes them: each
    /// account's balance plus its credit there (a host's earnings, an undelivered refund); the
    /// marketplace's own entry, if listed, is its balance less every credit. So a settlement
    /// reads as the host being paid when its earnings are credited, and the accounts' total is
    /// their balances' total.
    pub async fn holdings(&self, token: Address, accounts: &[Address]) -> Result<Balances> {
        let marketplace = self.deployment.contracts.job_marketplace;
        let mut amounts = Vec::with_capacity(accounts.len());
        for &account in accounts {
            let balance = self.balance(token, account).await?;
            let held = if account == marketplace {
                let credited = self.manager.total_credit(token).await?;
                balance.saturating_sub(credited.base_units())
            } else {
                let credit = self.manager.escrow_credit(token, account).await?;
                balance.saturating_add(credit.base_units())
            };
            amounts.push((account, held));
        }
        Ok(Balances { token, amounts })
    }
}

/// One token's balances of a set of accounts, read at one moment by [`LocalChain::balances`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balances {
    token: Address,
    amounts: Vec<(Address, U256)>,
}

impl Balances {
    /// The token (the zero address is ETH).
    pub fn token(&self) -> Address {
        self.token
    }

    /// `account`'s balance, in base units.
    ///
    /// # Panics
    /// If `account` is not one of the accounts read.
    pub fn of(&self, account: Address) -> U256 {
        match self.amounts.iter().find(|(a, _)| *a == account) {
            Some((_, amount)) => *amount,
            None => panic!("{account:#x} is not among the balances read"),
        }
    }

    /// What the accounts hold together.
    pub fn total(&self) -> U256 {
        self.amounts
            .iter()
            .fold(U256::zero(), |sum, (_, amount)| sum.saturating_add(*amount))
    }

    /// Asserts that funds only moved between the accounts since `before`: together they hold
    /// what they held then, less `gas` (the wei they paid for gas; zero for an ERC-20), to the
    /// base unit.
    ///
    /// # Panics
    /// If they hold another amount, or `before` read another token or other accounts.
    pub fn assert_conserved_since(&self, before: &Self, gas: U256) {
        let accounts = |b: &Self| b.amounts.iter().map(|(a, _)| *a).collect::<Vec<_>>();
        assert!(
            self.token == before.token && accounts(self) == accounts(before),
            "balances of different tokens or accounts: {before:?} and {self:?}"
        );
        assert_eq!(
            self.total().saturating_add(gas),
            before.total(),
            "funds left or entered the accounts (gas {gas} wei): before {before:?}, after {self:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balances(amounts: &[(u64, u64)]) -> Balances {
        Balances {
            token: Address::zero(),
            amounts: amounts
                .iter()
                .map(|&(a, v)| (Address::from_low_u64_be(a), U256::from(v)))
                .collect(),
        }
    }

    #[test]
    fn moves_between_the_accounts_and_gas_are_conserved() {
        let before = balances(&[(1, 100), (2, 50)]);
        let after = balances(&[(1, 60), (2, 85)]);
        assert_eq!(after.of(Address::from_low_u64_be(2)), U256::from(85u64));
        assert_eq!(after.total(), U256::from(145u64));
        after.assert_conserved_since(&before, U256::from(5u64));
    }

    #[test]
    #[should_panic(expected = "funds left or entered the accounts")]
    fn funds_that_leave_the_accounts_are_caught() {
        let before = balances(&[(1, 100), (2, 50)]);
        balances(&[(1, 60), (2, 85)]).assert_conserved_since(&before, U256::zero());
    }

    #[test]
    fn imbalances_name_the_token() {
        let escrow = Imbalance::Escrow {
            token: Address::from_low_u64_be(7),
            held: TokenAmount::from_base_units(3u64),
            owed: TokenAmount::from_base_units(2u64),
        };
        assert!(
            escrow.to_string().starts_with("escrow of token 0x0000"),
            "{escrow}"
        );
    }
}
