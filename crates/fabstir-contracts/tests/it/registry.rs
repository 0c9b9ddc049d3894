//! NodeRegistry: registration, views, updates, unbonding, and its revert paths.

use ethers::types::U256;
use fabstir_contracts::anvil::advance_time;
use fabstir_contracts::{Error, NodeRegistration};
use fabstir_core::{ModelId, TokenAmount, TokenPrice};

use crate::common::{Env, MODEL, OTHER_MODEL, peer_id};

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

    let node = env
        .manager
        .node(host)
        .await
        .expect("read")
        .expect("registered");
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
    assert_eq!(
        env.manager
            .node_by_peer_id(&peer_id(1))
            .await
            .expect("read"),
        Some(host)
    );
    assert_eq!(
        env.manager
            .node_by_peer_id(&peer_id(7))
            .await
            .expect("read"),
        None
    );
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
    let node = env
        .manager
        .node(host)
        .await
        .expect("read")
        .expect("registered");
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
    assert_eq!(
        env.manager
            .node(host)
            .await
            .expect("read")
            .expect("registered")
            .info
            .metadata,
        "v2"
    );

    // Unregister, unbond, withdraw.
    env.manager
        .unregister_node(&env.host)
        .await
        .expect("unregisters");
    let node = env
        .manager
        .node(host)
        .await
        .expect("read")
        .expect("still has a record");
    assert!(!node.info.active);
    assert!(node.unbonding_end.is_some());
    assert!(!env.manager.is_active(host).await.expect("read"));
    assert_eq!(
        env.manager
            .node_by_peer_id(&peer_id(1))
            .await
            .expect("read"),
        None
    );
    let err = env.manager.withdraw_stake(&env.host).await.unwrap_err();
    assert!(matches!(err, Error::StillUnbonding { .. }), "{err}");
    let err = env
        .manager
        .update_metadata("x", &env.host)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotRegistered(a) if a == host), "{err}");
    advance_time(env.manager.provider().as_ref(), 3_601)
        .await
        .expect("time passes");
    env.manager
        .withdraw_stake(&env.host)
        .await
        .expect("withdraws");
    assert_eq!(env.balance(fab, host).await, fab_before);
    assert!(env.manager.node(host).await.expect("read").is_none());
    let err = env.manager.withdraw_stake(&env.host).await.unwrap_err();
    assert!(matches!(err, Error::NotUnbonding(_)), "{err}");
    env.finish().await;
}

#[tokio::test]
async fn registration_reverts_are_named() {
    let env = Env::new().await;
    env.register(&env.host, 1, &[MODEL]).await;
    let stake = env.manager.min_stake().await.expect("min stake");
    let registration = |peer: u8, stake: TokenAmount| NodeRegistration {
        peer_id: peer_id(peer),
        models: vec![ModelId::from_name(MODEL)],
        prices: vec![],
        metadata: String::new(),
        stake,
    };
    let err = env
        .manager
        .register_node(&registration(9, stake), &env.host)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::AlreadyRegistered(a) if a == env.host.address()),
        "{err}"
    );
    let err = env
        .manager
        .register_node(&registration(1, stake), &env.host2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::PeerIdTaken { owner } if owner == env.host.address()),
        "{err}"
    );
    let low = TokenAmount(stake.base_units() - U256::one());
    let err = env
        .manager
        .register_node(&registration(2, low), &env.host2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::StakeTooLow { minimum, .. } if minimum == stake.base_units()),
        "{err}"
    );
    let mut duplicate = registration(2, stake);
    duplicate.models = vec![ModelId::from_name(MODEL); 2];
    let err = env
        .manager
        .register_node(&duplicate, &env.host2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidModels), "{err}");
    let mut long = registration(2, stake);
    long.metadata = "x".repeat(2_000);
    let err = env
        .manager
        .register_node(&long, &env.host2)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::MetadataTooLong(_)), "{err}");
    // No FAB at all: the registry cannot pull the stake.
    let poor = env.manager.signer(env.anvil.wallet(8).expect("account"));
    let err = env
        .manager
        .register_node(&registration(3, stake), &poor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientBalance { .. }), "{err}");
    env.finish().await;
}
