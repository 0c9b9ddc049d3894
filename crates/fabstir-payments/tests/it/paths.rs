//! Each payment path sends exactly the transactions it should, and bad input sends none.

use ethers::types::U256;
use fabstir_core::{PaymentToken, TokenAmount};
use fabstir_payments::{
    ApprovalPolicy, Error, JobPayment, PaymentConfig, PaymentManager, PaymentMethod, TokenRegistry,
};

use crate::common::Env;

/// An ERC-20 job pays 100 tokens x `price`: the first approves (2 transactions), the next
/// reuses the allowance (1 transaction).
async fn approve_once_then_reuse(symbol: &str, price: u64, cap: &str) {
    let env = Env::new().await;
    let payments = env.payments(env.cap(symbol, cap), false);
    let token = env.token(symbol);
    let balance_before = payments
        .balance(env.client.address(), &token)
        .await
        .unwrap();

    let (payment, first, sent) = env.submit(&payments, &token, price).await;
    assert_eq!(first.method, PaymentMethod::Token { approval: true });
    assert_eq!(first.transactions.len(), 2);
    assert_eq!(sent, U256::from(2u64));

    let (_, second, sent) = env.submit(&payments, &token, price).await;
    assert_eq!(second.method, PaymentMethod::Token { approval: false });
    assert_eq!(second.transactions.len(), 1);
    assert_eq!(sent, U256::one());
    assert_ne!(first.posted.job, second.posted.job);

    let spent = payment.amount.base_units() * 2;
    let balance_after = payments
        .balance(env.client.address(), &token)
        .await
        .unwrap();
    assert_eq!(
        balance_before.base_units() - balance_after.base_units(),
        spent
    );
    let cap = token.parse_amount(cap).unwrap().base_units();
    assert_eq!(
        env.allowance(env.client.address(), &token).await,
        cap - spent
    );
    env.assert_conserved().await;
}

#[tokio::test]
async fn usdc_first_job_approves_next_reuses() {
    approve_once_then_reuse("USDC", 10_000, "100").await;
}

#[tokio::test]
async fn dai_first_job_approves_next_reuses() {
    approve_once_then_reuse("DAI", 1_000_000_000_000_000, "5").await;
}

#[tokio::test]
async fn usdc_permit_posts_in_one_transaction() {
    let env = Env::new().await;
    let payments = env.payments(ApprovalPolicy::Exact, true);
    let usdc = env.token("USDC");
    let (payment, submission, sent) = env.submit(&payments, &usdc, 10_000).await;
    assert_eq!(submission.method, PaymentMethod::Permit);
    assert_eq!(submission.transactions.len(), 1);
    assert_eq!(sent, U256::one());
    assert_eq!(
        env.allowance(env.client.address(), &usdc).await,
        U256::zero()
    );
    let job = env.contracts.job(submission.posted.job).await.unwrap();
    assert_eq!(job.amount, payment.amount);
    env.assert_conserved().await;
}

#[tokio::test]
async fn eth_posts_in_one_transaction() {
    let env = Env::new().await;
    let payments = env.payments(ApprovalPolicy::Exact, true);
    let eth = PaymentToken::eth();
    let (payment, submission, sent) = env.submit(&payments, &eth, 1_000_000_000).await;
    assert_eq!(submission.method, PaymentMethod::Eth);
    assert_eq!(sent, U256::one());
    let held = env
        .contracts
        .escrow_balance(ethers::types::Address::zero())
        .await
        .unwrap();
    assert_eq!(held, payment.amount);
    env.assert_conserved().await;
}

#[tokio::test]
async fn usdt_allowance_goes_through_zero() {
    let env = Env::new().await;
    let payments = env.payments(ApprovalPolicy::Exact, true);
    let usdt = env.token("USDT");
    // A small standing allowance that does not cover the job: USDT refuses to change it
    // directly.
    let (spender, one) = (
        env.contracts.payment_spender(),
        TokenAmount::from_base_units(1u64),
    );
    env.contracts
        .approve(usdt.address(), spender, one, &env.client)
        .await
        .unwrap();
    let (_, submission, sent) = env.submit(&payments, &usdt, 10_000).await;
    assert_eq!(submission.method, PaymentMethod::Token { approval: true });
    assert_eq!(submission.transactions.len(), 3, "zero, approve, post");
    assert_eq!(sent, U256::from(3u64));
    assert_eq!(
        env.allowance(env.client.address(), &usdt).await,
        U256::zero()
    );
    env.assert_conserved().await;
}

#[tokio::test]
async fn insufficient_balance_fails_before_sending() {
    let env = Env::new().await;
    let payments = env.payments(ApprovalPolicy::Exact, false);
    let usdc = env.token("USDC");
    let (poor, amount) = (env.poor.address(), usdc.parse_amount("0.2").unwrap());
    env.contracts
        .faucet_mint(usdc.address(), poor, amount, &env.owner)
        .await
        .unwrap();
    let mut details = env.details(15_000).await;
    details.max_tokens = 100; // 1.50 USDC
    let payment = JobPayment::for_job(usdc, &details).unwrap();
    let before = env.nonce(&env.poor).await;
    let err = payments
        .submit_job(&details, &Env::open(), &payment, &env.poor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientBalance { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "insufficient USDC: need 1.50 USDC, have 0.20 USDC"
    );
    assert_eq!(
        env.nonce(&env.poor).await,
        before,
        "no transaction was sent"
    );
}

#[tokio::test]
async fn unknown_tokens_and_bad_amounts_fail_before_sending() {
    let env = Env::new().await;
    let payments = env.payments(ApprovalPolicy::Exact, false);
    let details = env.details(10).await;
    let before = env.nonce(&env.client).await;

    let stranger = PaymentToken::erc20(ethers::types::Address::repeat_byte(0x42), "XYZ", 6);
    let payment = JobPayment {
        token: stranger,
        amount: TokenAmount::from_base_units(1u64),
    };
    let err = payments
        .submit_job(&details, &Env::open(), &payment, &env.client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenNotAccepted(_)), "{err}");

    let err = JobPayment::parse(env.token("USDC"), "1.0000001").unwrap_err();
    assert!(
        err.to_string().contains("more than 6 decimal places"),
        "{err}"
    );

    assert_eq!(env.nonce(&env.client).await, before);
}

#[tokio::test]
async fn registry_metadata_is_checked_against_the_chain() {
    let env = Env::new().await;
    let mut deployment = env.deployment.clone();
    for token in &mut deployment.tokens {
        if token.symbol == "USDC" {
            token.decimals = 18;
        }
    }
    let payments = PaymentManager::new(
        env.contracts.clone(),
        TokenRegistry::from_deployment(&deployment),
        PaymentConfig::default(),
    );
    let usdc = deployment.token("USDC").unwrap().clone();
    let details = env.details(10).await;
    let payment = JobPayment::for_job(usdc, &details).unwrap();
    let err = payments
        .submit_job(&details, &Env::open(), &payment, &env.client)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("chain says USDC, 6 decimals"),
        "{err}"
    );
}
