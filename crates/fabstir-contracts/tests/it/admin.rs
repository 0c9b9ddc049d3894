//! Owner settings and the revert paths that depend on them.

use ethers::types::{Address, U256};
use fabstir_contracts::{Error, NodeRegistration};
use fabstir_core::{ModelId, TokenAmount, TokenPrice};

use crate::common::{Env, MODEL, peer_id};

#[tokio::test]
async fn fee_and_treasury_changes_apply_and_a_rejecting_treasury_is_named() {
    let env = Env::new().await;
    env.register(&env.host, 1, &[MODEL]).await;
    let usdc = env.token("USDC");

    // A zero treasury, a fee above the maximum and non-owners are refused.
    let err = env
        .manager
        .set_treasury(Address::zero(), &env.owner)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ZeroAddress), "{err}");
    let err = env
        .manager
        .set_fee_bps(1_001, &env.owner)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FeeTooHigh(1_001)), "{err}");
    let err = env.manager.set_fee_bps(10, &env.other).await.unwrap_err();
    assert!(
        matches!(err, Error::NotOwner(a) if a == env.other.address()),
        "{err}"
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
    let before = env.balance(usdc, new_treasury).await;
    let details = env.details(100, 10).await;
    let amount = details.escrow_amount().expect("no overflow");
    let posted = env.post_open_token_job(&details, usdc, amount).await;
    env.manager
        .claim_job(posted.job, &env.host)
        .await
        .expect("claims");
    let settled = env
        .manager
        .submit_result(posted.job, b"bafy-fee", 100, &env.host)
        .await
        .expect("submits");
    assert_eq!(settled.fee.base_units(), U256::from(100u64));
    assert_eq!(
        env.balance(usdc, new_treasury).await,
        before + U256::from(100u64)
    );

    // A treasury that rejects ETH makes ETH settlement fail with a named error; the job stays
    // claimed and funded until the owner fixes the treasury.
    let rejecting = env.token("USDT"); // a contract without a receive function
    env.manager
        .set_treasury(rejecting, &env.owner)
        .await
        .expect("sets treasury");
    let (posted, _) = env.post_open_eth_job(10, 1_000).await;
    env.manager
        .claim_job(posted.job, &env.host)
        .await
        .expect("claims");
    let err = env
        .manager
        .submit_result(posted.job, b"bafy-eth", 10, &env.host)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::EthTransferFailed { to, .. } if to == rejecting),
        "{err}"
    );
    env.manager
        .set_treasury(env.treasury, &env.owner)
        .await
        .expect("fixes treasury");
    env.manager
        .submit_result(posted.job, b"bafy-eth", 10, &env.host)
        .await
        .expect("submits");
    env.finish().await;
}

#[tokio::test]
async fn packing_limits_are_named_errors() {
    let env = Env::new().await;
    let dai = env.token("DAI");
    let mut details = env.details(10, 1).await;
    details.price_per_token = TokenAmount(U256::from(u64::MAX) + 1);
    let err = env
        .manager
        .post_job_with_token(
            &details,
            &Env::open(),
            dai,
            TokenAmount::from_base_units(1u64),
            &env.client,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PriceTooLarge(_)), "{err}");
    let details = env.details(10, 1).await;
    let huge = TokenAmount(U256::one() << 96);
    let err = env
        .manager
        .post_job_with_token(&details, &Env::open(), dai, huge, &env.client)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AmountTooLarge(a) if a == huge.base_units()),
        "{err}"
    );
    let mut details = env.details(1 << 24, 1).await;
    let err = env
        .manager
        .post_job(
            &details,
            &Env::open(),
            TokenAmount::from_base_units(1u64),
            &env.client,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidJobDetails), "{err}");
    details.max_tokens = (1 << 24) - 1;
    env.manager
        .post_job(
            &details,
            &Env::open(),
            TokenAmount::from_base_units(1u64),
            &env.client,
        )
        .await
        .expect("the largest max tokens is accepted");
    env.finish().await;
}

#[tokio::test]
async fn registry_owner_settings() {
    let env = Env::new().await;
    let min = TokenAmount(U256::exp10(18) * 500u64);
    let err = env
        .manager
        .set_min_stake(min, &env.client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotOwner(_)), "{err}");
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
    let node = env
        .manager
        .node(env.host.address())
        .await
        .expect("read")
        .expect("record");
    let now = env.now().await;
    assert_eq!(node.unbonding_end, Some(now + 10), "the new delay applies");
    env.finish().await;
}
