use std::path::Path;

use ethers::signers::Signer as _;
use ethers::types::Address;
use fabstir_cli::devnet::{Devnet, DevnetConfig, accounts};
use fabstir_core::TokenAmount;
use fabstir_sdk::FabstirSdk;

pub async fn devnet(hosts: usize) -> Devnet {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = hosts;
    Devnet::start(config).await.expect("devnet starts")
}

/// The model every devnet host serves.
pub fn model_of(devnet: &Devnet) -> String {
    let node = devnet.nodes[0].as_ref().unwrap();
    node.host.models().next().unwrap().1.name.clone()
}

pub fn address(devnet: &Devnet, account: usize) -> Address {
    devnet.wallet(account).unwrap().address()
}

pub fn client(devnet: &Devnet) -> Address {
    address(devnet, accounts::CLIENT)
}

pub fn treasury(devnet: &Devnet) -> Address {
    address(devnet, accounts::TREASURY)
}

pub async fn balance(sdk: &FabstirSdk, owner: Address, token: &str) -> TokenAmount {
    sdk.balance(owner, token).await.unwrap()
}

/// `owner`'s balance of `symbol` read from the chain now, without the SDK's per-block cache
/// (which another SDK's transaction does not invalidate).
pub async fn chain_balance(devnet: &Devnet, owner: Address, symbol: &str) -> TokenAmount {
    let token = devnet.deployment.token(symbol).unwrap().address();
    manager(devnet)
        .await
        .balance_of(token, owner)
        .await
        .unwrap()
}

/// The fees accrued in the escrow for the treasury in `symbol`, read from the chain now.
pub async fn accrued_fees(devnet: &Devnet, symbol: &str) -> TokenAmount {
    let token = devnet.deployment.token(symbol).unwrap().address();
    manager(devnet).await.accrued_fees(token).await.unwrap()
}

/// What the marketplace owes `owner` in `symbol` (a host's earnings), read from the chain now.
pub async fn credit(devnet: &Devnet, owner: Address, symbol: &str) -> TokenAmount {
    let token = devnet.deployment.token(symbol).unwrap().address();
    manager(devnet)
        .await
        .escrow_credit(token, owner)
        .await
        .unwrap()
}

/// A contract manager on the devnet's chain.
pub async fn manager(devnet: &Devnet) -> fabstir_contracts::HeadlessContractManager {
    fabstir_contracts::HeadlessContractManager::connect(
        &devnet.anvil.endpoint(),
        &devnet.deployment,
        &fabstir_contracts::ManagerConfig::local(),
    )
    .await
    .unwrap()
}

#[allow(dead_code)]
pub fn exists(path: &Path) -> bool {
    path.exists()
}
