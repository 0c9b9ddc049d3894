//! The local-chain harness (feature `test-utils`): a real anvil chain with the whole system
//! deployed by [`crate::deploy_local`], named funded accounts, the chain's clock, balances and
//! the fund-conservation check. The chain tests of every crate, the payments benchmark and the
//! CLI's devnet start their chain here.
//!
//! Dev accounts have fixed roles: [`DEPLOYER`] owns the contracts, [`CLIENT`] pays for jobs,
//! hosts follow from [`FIRST_HOST`], then other funded accounts, then accounts holding ETH only,
//! and [`TREASURY`] receives the protocol fees. The client, the hosts and the others are funded
//! with every test token.

use std::ops::Range;
use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::signers::{LocalWallet, Signer as _};
use ethers::types::{Address, H256, U256};
use fabstir_core::job::prompt_hash;
use fabstir_core::{
    Deployment, JobDetails, ModelId, NodePeerId, PaymentToken, SessionDetails, TokenAmount,
    TokenPrice,
};

use crate::anvil::Anvil;
use crate::error::{Error, Result};
use crate::{
    HeadlessContractManager, LocalDeployConfig, ManagerConfig, NodeRegistration, TxInfo,
    WalletSigner,
};

mod conservation;

pub use conservation::{Balances, Imbalance};

/// Dev account 0: deploys and owns the contracts.
pub const DEPLOYER: usize = 0;
/// Dev account 1: the client that pays for jobs.
pub const CLIENT: usize = 1;
/// Dev account 2: the first host; host `i` is `FIRST_HOST + i`.
pub const FIRST_HOST: usize = 2;
/// Dev account 9, the last one: receives the protocol fees.
pub const TREASURY: usize = 9;

/// Which accounts a [`LocalChain`] names and how it deploys.
#[derive(Debug, Clone)]
pub struct LocalChainConfig {
    /// Funded hosts, dev accounts from [`FIRST_HOST`] on.
    pub hosts: usize,
    /// Funded accounts that are neither the client nor a host, after the hosts.
    pub others: usize,
    /// Accounts after those that hold ETH but no test token.
    pub unfunded: usize,
    /// Fee, stake and test-token amounts. Its `treasury` and `fund` are replaced: fees go to
    /// [`TREASURY`], and the client, the hosts and the others are funded.
    pub deploy: LocalDeployConfig,
}

impl Default for LocalChainConfig {
    /// Two hosts, one other funded account and one unfunded account.
    fn default() -> Self {
        Self {
            hosts: 2,
            others: 1,
            unfunded: 1,
            deploy: LocalDeployConfig::default(),
        }
    }
}

/// A named dev account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Its index in anvil's list of dev accounts.
    pub index: usize,
    /// Its key, bound to the chain's id.
    pub wallet: LocalWallet,
    /// A signing middleware over the chain's manager, for the manager's write methods.
    pub signer: Arc<WalletSigner>,
}

impl Account {
    fn of(anvil: &Anvil, manager: &HeadlessContractManager, index: usize) -> Result<Self> {
        let wallet = anvil.wallet(index)?.with_chain_id(anvil.chain_id());
        Ok(Self {
            index,
            signer: manager.signer(wallet.clone()),
            wallet,
        })
    }

    /// Its address.
    pub fn address(&self) -> Address {
        self.wallet.address()
    }
}

/// A running anvil chain with the contracts deployed and the named accounts funded; dropping
/// it kills anvil.
#[derive(Debug)]
pub struct LocalChain {
    anvil: Anvil,
    deployment: Deployment,
    manager: HeadlessContractManager,
    deployer: Account,
    client: Account,
    hosts: Vec<Account>,
    others: Vec<Account>,
    unfunded: Vec<Account>,
    treasury: Account,
}

impl LocalChain {
    /// Starts a chain with the default configuration.
    pub async fn start() -> Result<Self> {
        Self::start_with(&LocalChainConfig::default()).await
    }

    /// Starts anvil, deploys and funds as `config` says, and connects a manager.
    pub async fn start_with(config: &LocalChainConfig) -> Result<Self> {
        let first_other = FIRST_HOST.saturating_add(config.hosts);
        let first_unfunded = first_other.saturating_add(config.others);
        let end = first_unfunded.saturating_add(config.unfunded);
        if end > TREASURY {
            return Err(Error::Anvil(format!(
                "{} hosts, {} other and {} unfunded accounts do not fit in dev accounts \
                 {FIRST_HOST} to {}",
                config.hosts,
                config.others,
                config.unfunded,
                TREASURY - 1
            )));
        }
        let anvil = Anvil::spawn()?;
        let address = |index: usize| anvil.wallet(index).map(|wallet| wallet.address());
        let deploy = LocalDeployConfig {
            treasury: Some(address(TREASURY)?),
            fund: (CLIENT..first_unfunded)
                .map(address)
                .collect::<Result<_>>()?,
            ..config.deploy.clone()
        };
        let deployment = anvil.deploy(DEPLOYER, &deploy).await?;
        let manager = HeadlessContractManager::connect(
            &anvil.endpoint(),
            &deployment,
            &ManagerConfig::local(),
        )
        .await?;
        let account = |index: usize| Account::of(&anvil, &manager, index);
        let accounts = |range: Range<usize>| range.map(account).collect::<Result<Vec<_>>>();
        let (deployer, client, treasury) =
            (account(DEPLOYER)?, account(CLIENT)?, account(TREASURY)?);
        let hosts = accounts(FIRST_HOST..first_other)?;
        let others = accounts(first_other..first_unfunded)?;
        let unfunded = accounts(first_unfunded..end)?;
        Ok(Self {
            anvil,
            deployment,
            manager,
            deployer,
            client,
            hosts,
            others,
            unfunded,
            treasury,
        })
    }

    /// The anvil process, for its RPC helpers in [`crate::anvil`].
    pub fn anvil(&self) -> &Anvil {
        &self.anvil
    }

    /// The chain's anvil process and deployment, for a caller that keeps only those.
    pub fn into_parts(self) -> (Anvil, Deployment) {
        (self.anvil, self.deployment)
    }

    /// The HTTP JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.anvil.chain_id()
    }

    /// Contract and token addresses.
    pub fn deployment(&self) -> &Deployment {
        &self.deployment
    }

    /// A manager connected to [`Self::endpoint`].
    pub fn manager(&self) -> &HeadlessContractManager {
        &self.manager
    }

    /// A manager for this deployment connected to `rpc_url` (a proxy in front of the chain).
    pub async fn connect(&self, rpc_url: &str) -> Result<HeadlessContractManager> {
        HeadlessContractManager::connect(rpc_url, &self.deployment, &ManagerConfig::local()).await
    }

    /// The deployed token `symbol` (ETH, USDC, USDT, DAI or FAB).
    pub fn token(&self, symbol: &str) -> Result<&PaymentToken> {
        self.deployment
            .token(symbol)
            .ok_or_else(|| Error::Anvil(format!("the local deployment has no {symbol}")))
    }

    /// Owns the contracts.
    pub fn deployer(&self) -> &Account {
        &self.deployer
    }

    /// Pays for jobs; funded.
    pub fn client(&self) -> &Account {
        &self.client
    }

    /// The hosts, in order; funded.
    pub fn hosts(&self) -> &[Account] {
        &self.hosts
    }

    /// Funded accounts that are neither the client nor a host.
    pub fn others(&self) -> &[Account] {
        &self.others
    }

    /// Accounts that hold ETH but no test token.
    pub fn unfunded(&self) -> &[Account] {
        &self.unfunded
    }

    /// Receives the protocol fees.
    pub fn treasury(&self) -> &Account {
        &self.treasury
    }

    /// Any dev account, named or not.
    pub fn account(&self, index: usize) -> Result<Account> {
        Account::of(&self.anvil, &self.manager, index)
    }

    /// The latest block's time: the chain's "now".
    pub async fn now(&self) -> Result<u64> {
        self.manager.latest_block_time().await
    }

    /// Moves the chain's clock forward by `seconds` and mines a block.
    pub async fn advance_time(&self, seconds: u64) -> Result<()> {
        crate::anvil::advance_time(self.manager.provider().as_ref(), seconds).await
    }

    /// Job terms for `model` and `prompt`: `max_tokens` at `price` base units each, ending
    /// `valid_for` seconds after the latest block.
    pub async fn job_details(
        &self,
        model: &str,
        prompt: &str,
        max_tokens: u32,
        price: u64,
        valid_for: u64,
    ) -> Result<JobDetails> {
        Ok(JobDetails {
            model: ModelId::from_name(model),
            prompt_hash: prompt_hash(prompt),
            max_tokens,
            price_per_token: TokenAmount::from_base_units(price),
            deadline: self.now().await? + valid_for,
        })
    }

    /// Session terms with host `host` (index into [`Self::hosts`]) for `model` at `price` base
    /// units per token, expiring `valid_for` seconds after the latest block.
    pub async fn session_details(
        &self,
        host: usize,
        model: &str,
        price: u64,
        valid_for: u64,
    ) -> Result<SessionDetails> {
        let host = self.hosts.get(host).ok_or_else(|| no_such_host(host))?;
        Ok(SessionDetails {
            model: ModelId::from_name(model),
            host: host.address(),
            price_per_token: TokenAmount::from_base_units(price),
            expiry: self.now().await? + valid_for,
        })
    }

    /// Registers host `host` (index into [`Self::hosts`]) at the minimum stake, serving
    /// `models` at `prices`, under the peer id [`test_peer_id`]`(host)`.
    pub async fn register_host(
        &self,
        host: usize,
        models: &[&str],
        prices: &[TokenPrice],
    ) -> Result<TxInfo> {
        let account = self.hosts.get(host).ok_or_else(|| no_such_host(host))?;
        let registration = NodeRegistration {
            peer_id: test_peer_id(u8::try_from(host).unwrap_or(u8::MAX)),
            models: models.iter().map(|m| ModelId::from_name(m)).collect(),
            prices: prices.to_vec(),
            metadata: String::new(),
            stake: self.manager.min_stake().await?,
        };
        self.manager
            .register_node(&registration, &account.signer)
            .await
    }

    /// `owner`'s balance of `token` (the zero address is ETH), in base units.
    pub async fn balance(&self, token: Address, owner: Address) -> Result<U256> {
        Ok(self.manager.balance_of(token, owner).await?.base_units())
    }

    /// How many transactions `address` has sent (its nonce).
    pub async fn nonce(&self, address: Address) -> Result<U256> {
        self.manager
            .provider()
            .get_transaction_count(address, None)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))
    }

    /// What the mined transaction `tx` cost its sender in gas, in wei.
    pub async fn gas_cost(&self, tx: H256) -> Result<U256> {
        let receipt = self
            .manager
            .provider()
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?
            .ok_or_else(|| Error::Rpc(format!("no receipt for {tx:#x}")))?;
        receipt
            .gas_used
            .zip(receipt.effective_gas_price)
            .and_then(|(gas, price)| gas.checked_mul(price))
            .ok_or_else(|| {
                Error::InvalidChainData(format!("the receipt of {tx:#x} has no valid gas cost"))
            })
    }
}

/// A valid libp2p peer id (an identity-hashed Ed25519 key of 32 `byte`s) for registrations in
/// tests.
pub fn test_peer_id(byte: u8) -> NodePeerId {
    let mut bytes = vec![0x00, 36, 0x08, 0x01, 0x12, 0x20];
    bytes.extend([byte; 32]);
    NodePeerId::from_bytes(bytes).expect("a well-formed identity multihash")
}

fn no_such_host(host: usize) -> Error {
    Error::InvalidChainData(format!("the local chain has no host {host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn too_many_accounts_are_refused_before_anvil_starts() {
        let config = LocalChainConfig {
            hosts: 7,
            others: 1,
            unfunded: 0,
            ..LocalChainConfig::default()
        };
        let err = LocalChain::start_with(&config).await.unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
    }
}
