//! Headless use: read-only calls without a signer, spending refused cleanly, signer switch.

use fabstir_core::{ModelId, ProviderQuery};
use fabstir_sdk::{Error, JobRequest};

use crate::common::{client, devnet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_without_signer_and_spending_needs_one() {
    let devnet = devnet(2).await;
    let sdk = devnet.sdk().await.unwrap();
    assert!(!sdk.has_signer());
    let model = devnet.nodes[0]
        .as_ref()
        .unwrap()
        .host
        .models()
        .next()
        .unwrap()
        .1
        .name
        .clone();
    let usdc = sdk.token("USDC").unwrap();
    let found = sdk
        .discover(&ProviderQuery::new(
            ModelId::from_name(&model),
            usdc.address(),
        ))
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "both hosts are discovered without a signer");
    let balance = sdk.balance(client(&devnet), "USDC").await.unwrap();
    assert!(balance.base_units() > 0u64.into());

    let err = sdk
        .submit_job(JobRequest::new(&model, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSigner), "{err}");

    // Set, switch, clear.
    sdk.set_signer(
        devnet
            .wallet(fabstir_cli::devnet::accounts::CLIENT)
            .unwrap(),
    )
    .unwrap();
    assert!(sdk.has_signer());
    assert_eq!(sdk.signer_address(), Some(client(&devnet)));
    let other = devnet.wallet(8).unwrap();
    let other_address = ethers::signers::Signer::address(&other);
    sdk.set_signer(other).unwrap();
    assert_eq!(sdk.signer_address(), Some(other_address));
    sdk.clear_signer();
    assert!(!sdk.has_signer());
    let wrong_chain = ethers::signers::Signer::with_chain_id(devnet.wallet(8).unwrap(), 5u64);
    assert!(matches!(
        sdk.set_signer(wrong_chain),
        Err(Error::WrongChain { signer: 5, .. })
    ));
}
