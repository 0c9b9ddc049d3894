//! Token behaviour: a USDT-like token (no return values, approve from zero) works end to end;
//! the deployment description round-trips.

use ethers::types::U256;
use fabstir_contracts::Error;
use fabstir_core::{Deployment, TokenAmount};

use crate::common::{Env, fails};

#[tokio::test]
async fn usdt_like_token_works() {
    let env = Env::with_host().await;
    let usdt = env.token("USDT");
    let spender = env.manager.payment_spender();
    let (client, host, treasury) = (env.client.address(), env.host.address(), env.treasury);
    let before = env.parties(usdt).await;
    let details = env.details(1_000, 20).await;
    let amount = details.escrow_amount().expect("no overflow");
    env.approve_spender(&env.client, usdt, amount.base_units())
        .await;
    // Like real USDT, changing a non-zero allowance to another non-zero value reverts.
    let one = TokenAmount::from_base_units(1u64);
    fails!(
        env.manager.approve(usdt, spender, one, &env.client),
        Error::Reverted(ref m) if m.contains("approve from non-zero")
    );
    let posted = env
        .manager
        .post_job_with_token(&details, &Env::open(), usdt, amount, &env.client)
        .await
        .expect("posts with USDT");
    let (_, settled) = env.settle(posted.job, b"bafy-usdt", 777).await;
    let cost = U256::from(777u64 * 20);
    let fee = cost / 100;
    assert_eq!(settled.fee.base_units(), fee);
    let after = env.parties(usdt).await;
    assert_eq!(after.of(client), before.of(client) - cost);
    assert_eq!(after.of(host), before.of(host) + cost - fee);
    assert_eq!(after.of(treasury), before.of(treasury));
    assert_eq!(
        env.manager.accrued_fees(usdt).await.expect("read"),
        TokenAmount(fee)
    );
    after.assert_conserved_since(&before, U256::zero());

    // Cancel refunds through the no-return transfer too.
    let (details, posted, amount) = env.post_token_job(usdt, 10, 20).await;
    env.manager
        .cancel_job(posted.job, &env.client)
        .await
        .expect("cancels");
    assert_eq!(env.balance(usdt, client).await, before.of(client) - cost);

    // Posting without enough allowance is a clear revert, not a silent failure.
    fails!(
        env.manager.post_job_with_token(&details, &Env::open(), usdt, amount, &env.client),
        Error::Reverted(ref m) if m.contains("insufficient allowance")
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
