//! A client that cannot receive its refund does not block settlement or expiry: the refund is
//! credited to it and withdrawn later.

use ethers::types::{Address, U256};
use fabstir_contracts::anvil::advance_time;
use fabstir_contracts::bindings::job_marketplace::{JobMarketplace, JobRequirements};
use fabstir_contracts::bindings::payment_escrow::PaymentEscrow;
use fabstir_contracts::bindings::rejecting_client::RejectingClient;
use fabstir_contracts::{JobStatus, MarketplaceEvent};
use fabstir_core::{JobId, TokenAmount};

use crate::common::{Env, MODEL};

#[tokio::test]
async fn undeliverable_refunds_are_credited_not_blocking() {
    let env = Env::new().await;
    env.register(&env.host, 1, &[MODEL]).await;
    let eth = Address::zero();
    let contracts = env.deployment.contracts;
    let client = RejectingClient::deploy(env.client.clone(), ())
        .expect("deployer")
        .send()
        .await
        .expect("deploys");
    let market = JobMarketplace::new(contracts.job_marketplace, env.manager.provider().clone());

    // The contract client posts an ETH job (100 tokens at 1 gwei).
    let details = env.details(100, 1_000_000_000).await;
    let value = details.escrow_amount().expect("no overflow").base_units();
    let post = market
        .post_job(
            abi_details(&details),
            JobRequirements {
                host: Address::zero(),
            },
        )
        .calldata()
        .expect("calldata");
    client
        .execute(contracts.job_marketplace, post)
        .value(value)
        .send()
        .await
        .expect("sends")
        .await
        .expect("mined");
    let job = JobId(env.manager.job_count().await.expect("count"));
    assert_eq!(
        env.manager.job(job).await.expect("job").client,
        client.address()
    );

    // The host is paid although the client rejects its refund; the refund is credited.
    let host_before = env.balance(eth, env.host.address()).await;
    let claim = env.manager.claim_job(job, &env.host).await.expect("claims");
    let settled = env
        .manager
        .submit_result(job, b"bafy-credit", 40, &env.host)
        .await
        .expect("settles");
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
        host_before + settled.paid.base_units() - claim.fee_wei() - settled.tx.fee_wei()
    );

    // Expiry of an unclaimed job credits the full amount too.
    let details = env.details(10, 1_000_000_000).await;
    let value2 = details.escrow_amount().expect("no overflow").base_units();
    let post = market
        .post_job(
            abi_details(&details),
            JobRequirements {
                host: Address::zero(),
            },
        )
        .calldata()
        .expect("calldata");
    client
        .execute(contracts.job_marketplace, post)
        .value(value2)
        .send()
        .await
        .expect("sends")
        .await
        .expect("mined");
    let job2 = JobId(env.manager.job_count().await.expect("count"));
    advance_time(env.manager.provider().as_ref(), 3_601)
        .await
        .expect("time passes");
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
    let withdraw = PaymentEscrow::new(contracts.payment_escrow, env.manager.provider().clone())
        .withdraw_credit(eth, payee)
        .calldata()
        .expect("calldata");
    client
        .execute(contracts.payment_escrow, withdraw)
        .send()
        .await
        .expect("sends")
        .await
        .expect("mined");
    assert_eq!(env.balance(eth, payee).await, credited);
    assert_eq!(
        env.manager
            .escrow_credit(eth, client.address())
            .await
            .expect("credit"),
        TokenAmount::ZERO
    );
    // Withdrawing nothing is a no-op.
    env.manager
        .withdraw_credit(eth, payee, &env.other)
        .await
        .expect("no-op");
    env.finish().await;
}

fn abi_details(
    details: &fabstir_core::JobDetails,
) -> fabstir_contracts::bindings::job_marketplace::JobDetails {
    fabstir_contracts::bindings::job_marketplace::JobDetails {
        model_id: details.model.0,
        prompt_hash: details.prompt_hash.0,
        max_tokens: details.max_tokens,
        price_per_token: details.price_per_token.base_units(),
        deadline: details.deadline,
    }
}
