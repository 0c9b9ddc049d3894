//! NodeRegistry: registration, views, updates, unbonding, and its revert paths.

use ethers::types::U256;
use fabstir_contracts::{Error, NodeRegistration};
use fabstir_core::{ModelId, TokenAmount, TokenPrice};

use crate::common::{Env, MODEL, OTHER_MODEL, fails, peer_id};

#[tokio::test]
async fn register_view_update_unregister_withdraw() {
    let env = Env::new().await;
    let fab = env.deployment.stake_token;
    let host = env.host.address();
    let fab_before = env.balance(fab, host).await;
    env.register(&env.host, 1, &[MODEL, OTHER_MODEL]).await;
    env.register(&env.host2, 2, &[MODEL]).await;
    let stake = env.manager.min_stake().await.expect("min stake");
    assert_eq!(
        env.balance(fab, host).await,
        fab_before - stake.base_units()
    );

    let node = env.node(host).await;
    assert!(node.info.active);
    assert_eq!(node.info.peer_id, peer_id(1));
    assert_eq!(node.info.stake, stake);
    assert_eq!(
        node.info.models,
        vec![ModelId::from_name(MODEL), ModelId::from_name(OTHER_MODEL)]
    );
    assert_eq!(node.info.prices.len(), 2);
    assert_eq!(node.info.metadata, r#"{"region":"local"}"#);
    assert_eq!(node.unbonding_end, None);
    assert!(env.manager.is_active(host).await.expect("read"));
    assert!(
        env.manager
            .can_serve(host, ModelId::from_name(OTHER_MODEL))
            .await
            .expect("read")
    );
    assert!(
        !env.manager
            .can_serve(env.host2.address(), ModelId::from_name(OTHER_MODEL))
            .await
            .expect("read")
    );
    assert_eq!(
        env.manager
            .price_of(host, env.token("USDC"))
            .await
            .expect("read"),
        TokenAmount::from_base_units(10u64)
    );
    assert!(
        env.manager
            .node(env.other.address())
            .await
            .expect("read")
            .is_none()
    );

    // Pagination.
    let model = ModelId::from_name(MODEL);
    let (page, total) = env
        .manager
        .nodes_for_model(model, 0, 1)
        .await
        .expect("page");
    assert_eq!((page.clone(), total), (vec![host], 2));
    let (page2, _) = env
        .manager
        .nodes_for_model(model, 1, 10)
        .await
        .expect("page");
    assert_eq!(page2, vec![env.host2.address()]);
    let (empty, total) = env
        .manager
        .nodes_for_model(model, 5, 10)
        .await
        .expect("page");
    assert!(empty.is_empty());
    assert_eq!(total, 2);

    // Updates.
    env.manager
        .update_models(&[ModelId::from_name(OTHER_MODEL)], &env.host)
        .await
        .expect("updates models");
    assert!(!env.manager.can_serve(host, model).await.expect("read"));
    let (page, total) = env
        .manager
        .nodes_for_model(model, 0, 10)
        .await
        .expect("page");
    assert_eq!((page, total), (vec![env.host2.address()], 1));
    env.manager
        .set_prices(
            &[
                TokenPrice {
                    token: env.token("DAI"),
                    price_per_token: TokenAmount::from_base_units(5u64),
                },
                TokenPrice {
                    token: env.token("USDC"),
                    price_per_token: TokenAmount::ZERO,
                },
            ],
            &env.host,
        )
        .await
        .expect("sets prices");
    let node = env.node(host).await;
    assert_eq!(
        node.info.prices.len(),
        2,
        "ETH and DAI remain, USDC removed"
    );
    assert!(
        node.info
            .prices
            .iter()
            .all(|p| p.token != env.token("USDC"))
    );
    env.manager
        .update_metadata("v2", &env.host)
        .await
        .expect("updates metadata");
    assert_eq!(env.node(host).await.info.metadata, "v2");

    // Unregister, unbond, withdraw.
    env.manager
        .unregister_node(&env.host)
        .await
        .expect("unregisters");
    let node = env.node(host).await;
    assert!(!node.info.active);
    assert!(node.unbonding_end.is_some());
    assert!(!env.manager.is_active(host).await.expect("read"));
    fails!(
        env.manager.withdraw_stake(&env.host),
        Error::StillUnbonding { .. }
    );
    fails!(
        env.manager.update_metadata("x", &env.host),
        Error::NotRegistered(a) if a == host
    );
    env.pass_an_hour().await;
    env.manager
        .withdraw_stake(&env.host)
        .await
        .expect("withdraws");
    assert_eq!(env.balance(fab, host).await, fab_before);
    assert!(env.manager.node(host).await.expect("read").is_none());
    fails!(
        env.manager.withdraw_stake(&env.host),
        Error::NotUnbonding(_)
    );
    env.finish().await;
}

#[tokio::test]
async fn registration_reverts_are_named() {
    let env = Env::with_host().await;
    let stake = env.manager.min_stake().await.expect("min stake");
    let registration = |peer: u8, stake: TokenAmount| NodeRegistration {
        peer_id: peer_id(peer),
        models: vec![ModelId::from_name(MODEL)],
        prices: vec![],
        metadata: String::new(),
        stake,
    };
    let (manager, host, host2) = (&env.manager, &env.host, &env.host2);
    fails!(
        manager.register_node(&registration(9, stake), host),
        Error::AlreadyRegistered(a) if a == host.address()
    );
    let low = TokenAmount(stake.base_units() - U256::one());
    fails!(
        manager.register_node(&registration(2, low), host2),
        Error::StakeTooLow { minimum, .. } if minimum == stake.base_units()
    );
    let mut duplicate = registration(2, stake);
    duplicate.models = vec![ModelId::from_name(MODEL); 2];
    fails!(
        manager.register_node(&duplicate, host2),
        Error::InvalidModels
    );
    let mut long = registration(2, stake);
    long.metadata = "x".repeat(2_000);
    fails!(
        manager.register_node(&long, host2),
        Error::MetadataTooLong(_)
    );
    // No FAB at all: the registry cannot pull the stake.
    fails!(
        manager.register_node(&registration(3, stake), &env.poor),
        Error::InsufficientBalance { .. }
    );
    env.finish().await;
}

/// Attack: a stranger registers a real host's public peer id first, hoping to lock it out
/// (`PeerIdTaken` did). Defence: peer ids are not exclusive; clients look up address → peer id.
#[tokio::test]
async fn a_squatted_peer_id_does_not_stop_the_real_host() {
    let env = Env::new().await;
    env.register(&env.host2, 5, &[MODEL]).await;
    env.register(&env.host, 5, &[MODEL]).await;
    let real = env.node(env.host.address()).await;
    assert!(real.info.active);
    assert_eq!(real.info.peer_id, peer_id(5));
    // Each address is answered for itself: the squatter's record says nothing about the host.
    assert_eq!(env.node(env.host2.address()).await.info.peer_id, peer_id(5));
    assert!(
        env.manager
            .can_serve(env.host.address(), ModelId::from_name(MODEL))
            .await
            .expect("read")
    );
    env.finish().await;
}

/// Attack: a host claims a job, unregisters, waits out the unbonding delay and withdraws its
/// stake while it still holds the client's job. Defence: each claim locks the stake until the
/// job ends; the stake comes back, to the base unit, once it does.
#[tokio::test]
async fn a_host_holding_a_claim_cannot_withdraw_its_stake() {
    let env = Env::with_host().await;
    let fab = env.deployment.stake_token;
    let host = env.host.address();
    let (posted, _) = env.post_open_eth_job(10, 1_000_000_000).await;
    env.claim(posted.job, &env.host).await;
    assert_eq!(env.manager.open_claims(host).await.expect("read"), 1);
    env.manager
        .unregister_node(&env.host)
        .await
        .expect("unregisters");
    env.pass_an_hour().await;
    let before = env.balance(fab, host).await;
    fails!(env.manager.withdraw_stake(&env.host), Error::StakeLocked(1));
    assert_eq!(env.balance(fab, host).await, before);
    // The job ends (expired after the grace period); the lock goes with it.
    env.chain.advance_time(3_600).await.expect("time passes");
    env.manager
        .expire_job(posted.job, &env.other)
        .await
        .expect("expires");
    assert_eq!(env.manager.open_claims(host).await.expect("read"), 0);
    let stake = env.node(host).await.info.stake;
    env.manager
        .withdraw_stake(&env.host)
        .await
        .expect("withdraws");
    assert_eq!(env.balance(fab, host).await, before + stake.base_units());
    env.finish().await;
}
