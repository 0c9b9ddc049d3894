//! `deploy_local`: every contract and test token on a local chain, configured and funded.

use std::ops::Deref;
use std::sync::Arc;

use ethers::contract::{Contract, ContractDeployer, ContractError};
use ethers::providers::Middleware;
use ethers::types::{Address, U256};
use fabstir_core::token::PaymentToken;
use fabstir_core::{ContractAddresses, Deployment, MarketRules, TokenAmount};

use crate::bindings::job_marketplace::JobMarketplace;
use crate::bindings::node_registry::NodeRegistry;
use crate::bindings::test_dai::TestDAI;
use crate::bindings::test_fab::TestFAB;
use crate::bindings::test_usdc::TestUSDC;
use crate::bindings::test_usdt::TestUSDT;
use crate::error::{Error, Result};
use crate::manager::{send, sender};

/// What [`deploy_local`] sets up.
#[derive(Debug, Clone)]
pub struct LocalDeployConfig {
    /// Protocol fee in basis points (100 = 1%).
    pub fee_bps: u16,
    /// Minimum FAB stake to register a host, in base units.
    pub min_stake: TokenAmount,
    /// Seconds between unregistering and withdrawing the stake.
    pub unbonding_delay: u64,
    /// Where fees go; `None` means the deployer.
    pub treasury: Option<Address>,
    /// The marketplace's time rules (immutable once deployed).
    pub rules: MarketRules,
    /// Accounts to mint test balances to.
    pub fund: Vec<Address>,
    /// USDC minted to each funded account (base units, 6 decimals).
    pub usdc_each: TokenAmount,
    /// USDT minted to each funded account (base units, 6 decimals).
    pub usdt_each: TokenAmount,
    /// DAI minted to each funded account (base units, 18 decimals).
    pub dai_each: TokenAmount,
    /// FAB minted to each funded account (base units, 18 decimals).
    pub fab_each: TokenAmount,
}

/// The time rules of local chains: jobs of at least 30 s, a 30 s grace period for claimed jobs,
/// and 5 s for a silent host to settle once its client asks to close (short, so that tests and
/// the devnet see a refund quickly).
pub const LOCAL_RULES: MarketRules = MarketRules {
    min_job_duration: 30,
    submit_grace: 30,
    close_window: 5,
};

impl Default for LocalDeployConfig {
    fn default() -> Self {
        let e18 = U256::exp10(18);
        Self {
            fee_bps: 100,
            min_stake: TokenAmount(U256::from(100u64) * e18),
            unbonding_delay: 3_600,
            treasury: None,
            rules: LOCAL_RULES,
            fund: Vec::new(),
            usdc_each: TokenAmount(U256::from(10_000_000_000u64)),
            usdt_each: TokenAmount(U256::from(10_000_000_000u64)),
            dai_each: TokenAmount(U256::from(10_000u64) * e18),
            fab_each: TokenAmount(U256::from(10_000u64) * e18),
        }
    }
}

/// Deploys the test tokens (USDC, USDT, DAI, FAB), the NodeRegistry and the JobMarketplace
/// (which creates its PaymentEscrow) with `signer` as owner, binds the registry to the
/// marketplace (which locks stakes while hosts hold claims); accepts ETH, USDC, USDT, DAI and
/// FAB for payment; mints test balances to `config.fund`; and returns the [`Deployment`].
pub async fn deploy_local<S: Middleware + 'static>(
    signer: &Arc<S>,
    config: &LocalDeployConfig,
) -> Result<Deployment> {
    let owner = sender(signer.as_ref())?;
    let chain_id = signer
        .get_chainid()
        .await
        .map_err(|e| Error::Rpc(e.to_string()))?
        .low_u64();
    let treasury = config.treasury.unwrap_or(owner);

    let (fab, start_block) = deploy(TestFAB::deploy(signer.clone(), ())).await?;
    let (usdc, _) = deploy(TestUSDC::deploy(signer.clone(), ())).await?;
    let (usdt, _) = deploy(TestUSDT::deploy(signer.clone(), ())).await?;
    let (dai, _) = deploy(TestDAI::deploy(signer.clone(), ())).await?;
    let (registry, _) = deploy(NodeRegistry::deploy(
        signer.clone(),
        (
            owner,
            fab,
            config.min_stake.base_units(),
            config.unbonding_delay,
        ),
    ))
    .await?;
    let (marketplace, _) = deploy(JobMarketplace::deploy(
        signer.clone(),
        (
            owner,
            registry,
            treasury,
            config.fee_bps,
            config.rules.min_job_duration,
            config.rules.submit_grace,
            config.rules.close_window,
        ),
    ))
    .await?;
    send(NodeRegistry::new(registry, signer.clone()).set_marketplace(marketplace)).await?;

    let deployment = Deployment {
        chain_id,
        contracts: ContractAddresses {
            job_marketplace: marketplace,
            node_registry: registry,
        },
        tokens: vec![
            PaymentToken::eth(),
            PaymentToken::erc20(usdc, "USDC", 6),
            PaymentToken::erc20(usdt, "USDT", 6),
            PaymentToken::erc20(dai, "DAI", 18),
            PaymentToken::erc20(fab, "FAB", 18),
        ],
        stake_token: fab,
        treasury,
        start_block,
    };
    let market = JobMarketplace::new(marketplace, signer.clone());
    for token in &deployment.tokens {
        send(market.set_token_accepted(token.address(), true)).await?;
    }
    for account in &config.fund {
        for (token, amount) in [
            (usdc, config.usdc_each),
            (usdt, config.usdt_each),
            (dai, config.dai_each),
            (fab, config.fab_each),
        ] {
            if !amount.base_units().is_zero() {
                let faucet = TestUSDC::new(token, signer.clone());
                send(faucet.mint(*account, amount.base_units())).await?;
            }
        }
    }
    Ok(deployment)
}

/// Sends a deployment; returns the new contract's address and the block it was mined in.
async fn deploy<S, C>(
    deployer: std::result::Result<ContractDeployer<S, C>, ContractError<S>>,
) -> Result<(Address, u64)>
where
    S: Middleware + 'static,
    C: From<Contract<S>> + Deref<Target = Contract<S>>,
{
    let deployer = deployer.map_err(Error::from_contract)?;
    let (contract, receipt) = deployer
        .send_with_receipt()
        .await
        .map_err(Error::from_contract)?;
    let block = receipt.block_number.map(|b| b.as_u64()).unwrap_or_default();
    Ok((contract.address(), block))
}
