//! A session's deposit takes the same payment paths as a job's escrow: approval once then
//! reuse, permit in one transaction, ETH in one, and nothing sent when the balance is short.

use ethers::types::{Address, U256};
use fabstir_core::{PaymentToken, TokenAmount, TokenPrice};
use fabstir_payments::{ApprovalPolicy, Error, JobPayment, PaymentManager, PaymentMethod};

use crate::common::{Env, MODEL};

/// Host 0 registered for [`MODEL`], asking 1 gwei per token in ETH and 10 base units in USDC.
async fn with_host() -> Env {
    let env = Env::new().await;
    let prices = [
        TokenPrice {
            token: Address::zero(),
            price_per_token: TokenAmount::from_base_units(1_000_000_000u64),
        },
        TokenPrice {
            token: env.token("USDC").address(),
            price_per_token: TokenAmount::from_base_units(10u64),
        },
    ];
    env.chain
        .register_host(0, &[MODEL], &prices)
        .await
        .expect("registers the host");
    env
}

/// The client opens a session with host 0 at `price`, depositing 1,000 tokens' worth of
/// `token`; returns the outcome and the transactions the client sent.
async fn open(
    env: &Env,
    payments: &PaymentManager,
    token: &PaymentToken,
    price: u64,
) -> (fabstir_payments::SessionSubmission, U256) {
    let details = env
        .chain
        .session_details(0, MODEL, price, 3_600)
        .await
        .unwrap();
    let payment = JobPayment {
        token: token.clone(),
        amount: TokenAmount::from_base_units(1_000 * price),
    };
    let before = env.nonce(&env.client).await;
    let opened = payments
        .open_session(&details, &payment, &env.client)
        .await
        .unwrap();
    (opened, env.nonce(&env.client).await - before)
}

#[tokio::test]
async fn a_usdc_deposit_approves_once_then_reuses_the_allowance() {
    let env = with_host().await;
    let payments = env.payments(env.cap("USDC", "1"), false);
    let usdc = env.token("USDC");
    let before = env
        .chain
        .balance(usdc.address(), env.client.address())
        .await;

    let (first, sent) = open(&env, &payments, &usdc, 10).await;
    assert_eq!(first.method, PaymentMethod::Token { approval: true });
    assert_eq!((first.transactions.len(), sent), (2, U256::from(2u64)));
    let (second, sent) = open(&env, &payments, &usdc, 10).await;
    assert_eq!(second.method, PaymentMethod::Token { approval: false });
    assert_eq!((second.transactions.len(), sent), (1, U256::one()));
    assert_ne!(first.opened.session, second.opened.session);

    let after = env
        .chain
        .balance(usdc.address(), env.client.address())
        .await;
    assert_eq!(before.unwrap() - after.unwrap(), U256::from(20_000u64));
    // The cap was 1 USDC (1,000,000 base units); two deposits of 10,000 used it.
    assert_eq!(
        env.allowance(env.client.address(), &usdc).await,
        U256::from(1_000_000u64 - 20_000)
    );
    let on_chain = env.contracts.session(second.opened.session).await.unwrap();
    assert_eq!(on_chain.deposit, TokenAmount::from_base_units(10_000u64));
    env.assert_conserved().await;
}

#[tokio::test]
async fn a_permit_deposit_is_one_transaction_and_eth_is_one() {
    let env = with_host().await;
    let payments = env.payments(ApprovalPolicy::Exact, true);
    let usdc = env.token("USDC");
    let (permit, sent) = open(&env, &payments, &usdc, 10).await;
    assert_eq!(permit.method, PaymentMethod::Permit);
    assert_eq!(sent, U256::one());
    assert_eq!(
        env.allowance(env.client.address(), &usdc).await,
        U256::zero()
    );

    let gwei = 1_000_000_000u64;
    let (eth, sent) = open(&env, &payments, &PaymentToken::eth(), gwei).await;
    assert_eq!(eth.method, PaymentMethod::Eth);
    assert_eq!(sent, U256::one());
    assert_eq!(
        env.contracts.escrow_balance(Address::zero()).await.unwrap(),
        TokenAmount::from_base_units(1_000 * gwei)
    );
    env.assert_conserved().await;
}

#[tokio::test]
async fn a_deposit_the_balance_cannot_cover_sends_nothing() {
    let env = with_host().await;
    let payments = env.payments(ApprovalPolicy::Exact, false);
    let usdc = env.token("USDC");
    let details = env
        .chain
        .session_details(0, MODEL, 10, 3_600)
        .await
        .unwrap();
    let payment = JobPayment {
        token: usdc,
        amount: TokenAmount::from_base_units(10_000u64),
    };
    let before = env.nonce(&env.poor).await;
    let err = payments
        .open_session(&details, &payment, &env.poor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientBalance { .. }), "{err}");
    assert_eq!(
        env.nonce(&env.poor).await,
        before,
        "no transaction was sent"
    );
    assert!(env.contracts.all_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_top_up_approves_what_it_needs_and_adds_to_the_deposit() {
    let env = with_host().await;
    let payments = env.payments(ApprovalPolicy::Exact, false);
    let usdc = env.token("USDC");
    let (opened, _) = open(&env, &payments, &usdc, 10).await;
    let session = opened.opened.session;
    let before = env.nonce(&env.client).await;
    let top_up = JobPayment {
        token: usdc.clone(),
        amount: TokenAmount::from_base_units(3_000u64),
    };
    let sent = payments
        .top_up_session(session, &top_up, &env.client)
        .await
        .unwrap();
    assert_eq!(sent.len(), 2, "an exact approval, then the top-up");
    assert_eq!(env.nonce(&env.client).await - before, U256::from(2u64));
    assert_eq!(
        env.allowance(env.client.address(), &usdc).await,
        U256::zero()
    );
    let on_chain = env.contracts.session(session).await.unwrap();
    assert_eq!(on_chain.deposit, TokenAmount::from_base_units(13_000u64));
    // The poor account cannot top up: refused before anything is sent.
    let before = env.nonce(&env.poor).await;
    let err = payments
        .top_up_session(session, &top_up, &env.poor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientBalance { .. }), "{err}");
    assert_eq!(env.nonce(&env.poor).await, before);
    env.assert_conserved().await;
}
