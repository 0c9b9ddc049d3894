//! Token behaviour: a USDT-like token (no return values, approve from zero) works end to end;
//! the deployment description round-trips.

use ethers::types::U256;
use fabstir_contracts::Error;
use fabstir_core::{Deployment, TokenAmount};

use crate::common::{Env, MODEL};

#[tokio::test]
async fn usdt_like_token_works() {
    let env = Env::new().await;
    env.register(&env.host, 1, &[MODEL]).await;
    let usdt = env.token("USDT");
    let spender = env.manager.payment_spender();
    let (client, host, treasury) = (env.client.address(), env.host.address(), env.treasury);
    let before = (
        env.balance(usdt, client).await,
        env.balance(usdt, host).await,
        env.balance(usdt, treasury).await,
    );
    let details = env.details(1_000, 20).await;
    let amount = details.escrow_amount().expect("no overflow");
    env.approve_spender(&env.client, usdt, amount.base_units())
        .await;
    // Like real USDT, changing a non-zero allowance to another non-zero value reverts.
    let err = env
        .manager
        .approve(
            usdt,
            spender,
            TokenAmount::from_base_units(1u64),
            &env.client,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Reverted(m) if m.contains("approve from non-zero")),
        "{err}"
    );
    let posted = env
        .manager
        .post_job_with_token(&details, &Env::open(), usdt, amount, &env.client)
        .await
        .expect("posts with USDT");
    env.manager
        .claim_job(posted.job, &env.host)
        .await
        .expect("claims");
    let settled = env
        .manager
        .submit_result(posted.job, b"bafy-usdt", 777, &env.host)
        .await
        .expect("settles in USDT");
    let cost = U256::from(777u64 * 20);
    let fee = cost / 100;
    assert_eq!(settled.fee.base_units(), fee);
    assert_eq!(env.balance(usdt, client).await, before.0 - cost);
    assert_eq!(env.balance(usdt, host).await, before.1 + cost - fee);
    assert_eq!(env.balance(usdt, treasury).await, before.2 + fee);

    // Cancel refunds through the no-return transfer too.
    let details = env.details(10, 20).await;
    let amount = details.escrow_amount().expect("no overflow");
    let posted = env.post_open_token_job(&details, usdt, amount).await;
    env.manager
        .cancel_job(posted.job, &env.client)
        .await
        .expect("cancels");
    assert_eq!(env.balance(usdt, client).await, before.0 - cost);

    // Posting without enough allowance is a clear revert, not a silent failure.
    let err = env
        .manager
        .post_job_with_token(&details, &Env::open(), usdt, amount, &env.client)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Reverted(m) if m.contains("insufficient allowance")),
        "{err}"
    );
    env.finish().await;
}

#[tokio::test]
async fn deployment_round_trips_and_lists_every_token() {
    let env = Env::new().await;
    let json = env.deployment.to_json();
    let back = Deployment::from_json(&json).expect("parses");
    assert_eq!(back, env.deployment);
    for symbol in ["ETH", "USDC", "USDT", "DAI", "FAB"] {
        let token = env.deployment.token(symbol).expect("listed");
        assert!(
            env.manager
                .is_token_accepted(token.address())
                .await
                .expect("read"),
            "{symbol} accepted"
        );
    }
    assert_eq!(env.deployment.token("USDC").expect("usdc").decimals, 6);
    assert_eq!(env.manager.treasury().await.expect("read"), env.treasury);
    assert_eq!(env.manager.fee_bps().await.expect("read"), 100);
    // The funded accounts got their test balances.
    assert_eq!(
        env.balance(env.token("USDC"), env.client.address()).await,
        U256::from(10_000_000_000u64)
    );
    env.finish().await;
}
