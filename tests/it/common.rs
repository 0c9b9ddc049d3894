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

#[allow(dead_code)]
pub fn exists(path: &Path) -> bool {
    path.exists()
}
