//! A malicious ERC-20 that re-enters the marketplace on transfer cannot drain the escrow.

use ethers::contract::EthError as _;
use ethers::types::{Address, U256};
use fabstir_contracts::bindings::job_marketplace::{
    JobMarketplace, JobRequirements, ReentrancyGuardReentrantCall,
};
use fabstir_contracts::bindings::reentrant_token::ReentrantToken;
use fabstir_contracts::bindings::test_usdc::TestUSDC;
use fabstir_core::TokenAmount;

use crate::common::{Env, abi_details, mined};

#[tokio::test]
async fn reentrant_token_cannot_drain_the_escrow() {
    let mut env = Env::with_host().await;
    let owner = env.owner.clone();
    let evil = ReentrantToken::deploy(owner.clone(), ())
        .expect("deployer")
        .send()
        .await
        .expect("deploys");
    let evil_address = evil.address();
    env.extra_tokens.push(evil_address);
    env.manager
        .set_token_accepted(evil_address, true, &env.owner)
        .await
        .expect("owner accepts the token (the worst case)");
    let contracts = env.deployment.contracts;
    let market = JobMarketplace::new(contracts.job_marketplace, env.manager.provider().clone());

    // An honest client's job keeps 5_000 units in escrow: the prize.
    mined(evil.mint(env.client.address(), U256::from(5_000u64))).await;
    let details = env.details(500, 10).await;
    let honest_amount = TokenAmount::from_base_units(5_000u64);
    env.approve_spender(&env.client, evil_address, honest_amount.base_units())
        .await;
    let honest = env
        .manager
        .post_job_with_token(
            &details,
            &Env::open(),
            evil_address,
            honest_amount,
            &env.client,
        )
        .await
        .expect("honest post");

    // The token contract itself posts a job as a client.
    let stake = U256::from(1_000u64);
    mined(evil.mint(evil_address, stake)).await;
    let approve = TestUSDC::new(evil_address, env.manager.provider().clone())
        .approve(contracts.job_marketplace, stake)
        .calldata()
        .expect("calldata");
    mined(evil.execute(evil_address, approve)).await;
    let attacker_details = env.details(100, 10).await;
    let post = market
        .post_job_with_token(
            abi_details(&attacker_details),
            JobRequirements {
                host: Address::zero(),
            },
            evil_address,
            stake,
        )
        .calldata()
        .expect("calldata");
    mined(evil.execute(contracts.job_marketplace, post)).await;
    let attacker_job = env.last_job().await;
    assert_ne!(attacker_job, honest.job);
    let attacker_terms = env.manager.job_terms(attacker_job).await.expect("terms");

    // Attack 1: on the refund transfer, cancel the same job again (a second refund).
    let cancel = market
        .cancel_job(attacker_job.to_u256(), attacker_terms)
        .calldata()
        .expect("calldata");
    mined(evil.arm(contracts.job_marketplace, cancel.clone())).await;
    mined(evil.execute(contracts.job_marketplace, cancel)).await;
    assert_eq!(evil.attempts().call().await.expect("read"), U256::one());
    assert_eq!(
        evil.successes().call().await.expect("read"),
        U256::zero(),
        "re-entry blocked"
    );
    assert_eq!(
        env.balance(evil_address, evil_address).await,
        stake,
        "refunded once, exactly"
    );
    assert_eq!(
        env.balance(evil_address, contracts.job_marketplace).await,
        U256::from(5_000u64)
    );

    // Attack 2: on the honest job's refund transfer, during its settlement, cancel the same
    // job to be refunded twice.
    env.claim(honest.job, &env.host).await;
    let drain = market
        .cancel_job(
            honest.job.to_u256(),
            env.manager.job_terms(honest.job).await.expect("terms"),
        )
        .calldata()
        .expect("calldata");
    mined(evil.arm(contracts.job_marketplace, drain)).await;
    // The host is paid despite the attack.
    let settled = env.submit(honest.job, b"bafy-evil", 100, &env.host).await;
    assert_eq!(
        evil.attempts().call().await.expect("read"),
        U256::from(2u64)
    );
    assert_eq!(
        evil.successes().call().await.expect("read"),
        U256::zero(),
        "drain blocked"
    );
    let reason = evil.last_result().call().await.expect("read");
    assert_eq!(
        reason.get(..4),
        Some(&ReentrancyGuardReentrantCall::selector()[..]),
        "the guard refused the re-entry: {reason}"
    );
    assert_eq!(
        env.balance(evil_address, evil_address).await,
        stake,
        "attacker gained nothing"
    );
    assert_eq!(
        settled.paid.base_units() + settled.fee.base_units(),
        U256::from(1_000u64)
    );
    assert_eq!(
        env.manager
            .escrow_credit(evil_address, env.host.address())
            .await
            .expect("credit"),
        settled.paid,
        "the host's earnings are credited"
    );
    env.finish().await;
}
