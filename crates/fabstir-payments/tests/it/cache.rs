//! Balances are cached per block: one RPC call per block, refreshed by a new block.

use std::time::Duration;

use fabstir_payments::{ApprovalPolicy, PaymentConfig, PaymentManager, TokenRegistry};

use crate::common::Env;
use fabstir_contracts::anvil::RpcProxy;

#[tokio::test]
async fn balance_reads_cost_one_call_per_block() {
    let env = Env::new().await;
    let proxy = RpcProxy::start(env.chain.endpoint()).await.unwrap();
    let contracts = env.chain.connect(&proxy.url).await.unwrap();
    let payments = PaymentManager::new(
        contracts,
        TokenRegistry::from_deployment(&env.deployment),
        PaymentConfig {
            approval: ApprovalPolicy::Exact,
            block_poll_interval: Duration::from_millis(20),
            ..PaymentConfig::default()
        },
    );
    let usdc = env.token("USDC");
    let owner = env.client.address();

    let first = payments.balance(owner, &usdc).await.unwrap();
    let calls = proxy.count("eth_call");
    assert_eq!(calls, 1);
    for _ in 0..10 {
        assert_eq!(payments.balance(owner, &usdc).await.unwrap(), first);
    }
    assert_eq!(
        proxy.count("eth_call"),
        calls,
        "repeated reads in one block are cached"
    );

    // Concurrent reads share one load too.
    let reads = futures::future::join_all((0..8).map(|_| payments.balance(owner, &usdc))).await;
    assert!(reads.iter().all(|r| r.as_ref().unwrap() == &first));
    assert_eq!(proxy.count("eth_call"), calls);

    // A new block (mined behind the manager's back) makes the next read go to the chain.
    fabstir_contracts::anvil::mine(env.contracts.provider().as_ref())
        .await
        .unwrap();
    let refreshed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            payments.balance(owner, &usdc).await.unwrap();
            if proxy.count("eth_call") > calls {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refreshed.is_ok(), "the new block refreshes the balance");
    assert_eq!(proxy.count("eth_call"), calls + 1);
}
