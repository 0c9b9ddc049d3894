//! A client that cannot receive its refund does not block settlement or expiry: the refund is
//! credited to it and withdrawn later.

use ethers::types::{Address, U256};
use fabstir_contracts::bindings::job_marketplace::{JobMarketplace, JobRequirements};
use fabstir_contracts::bindings::rejecting_client::RejectingClient;
use fabstir_contracts::{JobStatus, MarketplaceEvent};
use fabstir_core::TokenAmount;

use crate::common::{Env, abi_details, mined};

#[tokio::test]
async fn undeliverable_refunds_are_credited_not_blocking() {
    let env = Env::with_host().await;
    let eth = Address::zero();
    let contracts = env.deployment.contracts;
    let client = RejectingClient::deploy(env.client.clone(), ())
        .expect("deployer")
        .send()
        .await
        .expect("deploys");
    let market = JobMarketplace::new(contracts.job_marketplace, env.manager.provider().clone());

    // The contract client posts an ETH job (100 tokens at 1 gwei) and then one of 10 tokens.
    let post = async |max_tokens: u32| {
        let details = env.details(max_tokens, 1_000_000_000).await;
        let value = details.escrow_amount().expect("no overflow").base_units();
        let open = JobRequirements {
            host: Address::zero(),
        };
        let call = market.post_job(abi_details(&details), open).calldata();
        mined(
            client
                .execute(contracts.job_marketplace, call.expect("calldata"))
                .value(value),
        )
        .await;
        let job = env.last_job().await;
        (job, value)
    };
    let (job, value) = post(100).await;
    assert_eq!(
        env.manager.job(job).await.expect("job").client,
        client.address()
    );

    // The host is paid although the client rejects its refund; the refund is credited. The
    // client is a contract wallet: its receipt is checked through ERC-1271.
    let host_before = env.balance(eth, env.host.address()).await;
    let earned_before = env
        .manager
        .escrow_credit(eth, env.host.address())
        .await
        .expect("credit");
    let (claim, settled) = env.settle(job, b"bafy-credit", 40).await;
    let cost = U256::from(40u64) * U256::from(1_000_000_000u64);
    assert_eq!(settled.refund.base_units(), value - cost);
    assert_eq!(env.balance(eth, client.address()).await, U256::zero());
    assert_eq!(
        env.manager
            .escrow_credit(eth, client.address())
            .await
            .expect("credit"),
        settled.refund
    );
    assert_eq!(
        env.balance(eth, env.host.address()).await,
        host_before - claim.fee_wei() - settled.tx.fee_wei()
    );
    assert_eq!(
        env.manager
            .escrow_credit(eth, env.host.address())
            .await
            .expect("credit"),
        TokenAmount(earned_before.base_units() + settled.paid.base_units()),
        "the host's earnings are credited"
    );

    // Expiry of an unclaimed job credits the full amount too.
    let (job2, value2) = post(10).await;
    env.pass_an_hour().await;
    env.manager
        .expire_job(job2, &env.other)
        .await
        .expect("anyone expires");
    assert_eq!(
        env.manager.job(job2).await.expect("job").status,
        JobStatus::Expired
    );
    let credited = settled.refund.base_units() + value2;
    assert_eq!(
        env.manager
            .escrow_credit(eth, client.address())
            .await
            .expect("credit"),
        TokenAmount(credited)
    );
    let events = env.manager.job_events(job2, 0).await.expect("events");
    assert!(matches!(
        events.last().map(|e| &e.event),
        Some(MarketplaceEvent::JobExpired { .. })
    ));

    // The client withdraws its credit to an address that accepts ETH.
    let payee = Address::repeat_byte(0x77);
    let withdraw = market
        .withdraw_credit(eth, payee)
        .calldata()
        .expect("calldata");
    mined(client.execute(contracts.job_marketplace, withdraw)).await;
    assert_eq!(env.balance(eth, payee).await, credited);
    assert_eq!(
        env.manager
            .escrow_credit(eth, client.address())
            .await
            .expect("credit"),
        TokenAmount::ZERO
    );
    // The host withdraws its earnings to its own address.
    let host_gas = env
        .manager
        .withdraw_credit(eth, env.host.address(), &env.host)
        .await
        .expect("the host withdraws")
        .fee_wei();
    assert_eq!(
        env.balance(eth, env.host.address()).await,
        host_before + earned_before.base_units() + settled.paid.base_units()
            - claim.fee_wei()
            - settled.tx.fee_wei()
            - host_gas
    );
    // Withdrawing nothing is a no-op.
    env.manager
        .withdraw_credit(eth, payee, &env.other)
        .await
        .expect("no-op");
    env.finish().await;
}
