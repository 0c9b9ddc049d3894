//! Owner settings and the revert paths that depend on them.

use ethers::types::{Address, U256};
use fabstir_contracts::{Error, NodeRegistration};
use fabstir_core::{ModelId, TokenAmount, TokenPrice};

use crate::common::{Env, MODEL, fails, peer_id};

#[tokio::test]
async fn fee_and_treasury_changes_apply_to_later_jobs() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");

    // A zero treasury, a fee above the maximum and non-owners are refused.
    let (manager, owner) = (&env.manager, &env.owner);
    fails!(
        manager.set_treasury(Address::zero(), owner),
        Error::ZeroAddress
    );
    fails!(manager.set_fee_bps(1_001, owner), Error::FeeTooHigh(1_001));
    fails!(
        manager.set_fee_bps(10, &env.other),
        Error::NotOwner(a) if a == env.other.address()
    );

    // 10% to a new treasury.
    let new_treasury = env.other.address();
    env.manager
        .set_fee_bps(1_000, &env.owner)
        .await
        .expect("sets fee");
    env.manager
        .set_treasury(new_treasury, &env.owner)
        .await
        .expect("sets treasury");
    assert_eq!(env.manager.fee_bps().await.expect("read"), 1_000);
    assert_eq!(env.manager.treasury().await.expect("read"), new_treasury);
    let (_, posted, _) = env.post_token_job(usdc, 100, 10).await;
    let (_, settled) = env.settle(posted.job, b"bafy-fee", 100).await;
    assert_eq!(settled.fee.base_units(), U256::from(100u64));
    // Fees accrue; the new treasury withdraws them, and nobody else can.
    assert_eq!(
        env.manager.accrued_fees(usdc).await.expect("read"),
        TokenAmount::from_base_units(100u64)
    );
    fails!(
        env.manager.withdraw_fees(usdc, new_treasury, &env.owner),
        Error::NotTreasury(a) if a == env.owner.address()
    );
    let before = env.balance(usdc, new_treasury).await;
    env.manager
        .withdraw_fees(usdc, new_treasury, &env.other)
        .await
        .expect("the treasury withdraws");
    assert_eq!(
        env.balance(usdc, new_treasury).await,
        before + U256::from(100u64)
    );
    assert_eq!(
        env.manager.accrued_fees(usdc).await.expect("read"),
        TokenAmount::ZERO
    );

    env.finish().await;
}

#[tokio::test]
async fn packing_limits_are_named_errors() {
    let env = Env::new().await;
    let dai = env.token("DAI");
    let (open, client, one) = (Env::open(), &env.client, TokenAmount::from_base_units(1u64));
    let mut details = env.details(10, 1).await;
    details.price_per_token = TokenAmount(U256::from(u64::MAX) + 1);
    fails!(
        env.manager
            .post_job_with_token(&details, &open, dai, one, client),
        Error::PriceTooLarge(_)
    );
    let mut details = env.details(1 << 24, 1).await;
    fails!(
        env.manager.post_job(&details, &open, one, client),
        Error::InvalidJobDetails
    );
    details.max_tokens = (1 << 24) - 1;
    let value = details.escrow_amount().expect("no overflow");
    env.manager
        .post_job(&details, &open, value, client)
        .await
        .expect("the largest max tokens is accepted");
    env.finish().await;
}

#[tokio::test]
async fn registry_owner_settings() {
    let env = Env::new().await;
    let min = TokenAmount(U256::exp10(18) * 500u64);
    fails!(
        env.manager.set_min_stake(min, &env.client),
        Error::NotOwner(_)
    );
    env.manager
        .set_min_stake(min, &env.owner)
        .await
        .expect("sets min stake");
    env.manager
        .set_unbonding_delay(10, &env.owner)
        .await
        .expect("sets delay");
    assert_eq!(env.manager.min_stake().await.expect("read"), min);
    let mut registration = NodeRegistration {
        peer_id: peer_id(5),
        models: vec![ModelId::from_name(MODEL)],
        prices: (1..=17u64)
            .map(|i| TokenPrice {
                token: Address::from_low_u64_be(i),
                price_per_token: TokenAmount::from_base_units(i),
            })
            .collect(),
        metadata: String::new(),
        stake: min,
    };
    let err = env
        .manager
        .register_node(&registration, &env.host)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidPrices),
        "more than 16 prices: {err}"
    );
    registration.prices.truncate(16);
    env.manager
        .register_node(&registration, &env.host)
        .await
        .expect("registers");
    env.manager
        .unregister_node(&env.host)
        .await
        .expect("unregisters");
    let node = env.node(env.host.address()).await;
    let now = env.now().await;
    assert_eq!(node.unbonding_end, Some(now + 10), "the new delay applies");
    env.finish().await;
}
