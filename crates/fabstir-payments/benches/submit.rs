//! RPC round trips and wall time of a USDC job submission, with a cold and a warm cache, on
//! a real anvil chain. The RPC counts are printed (they are deterministic); criterion measures
//! the time.

#![allow(clippy::unwrap_used, missing_docs)] // Set-up failures abort; criterion generates items.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use fabstir_contracts::anvil::RpcProxy;
use fabstir_contracts::testing::LocalChain;
use fabstir_contracts::{HeadlessContractManager, WalletSigner};
use fabstir_core::{JobDetails, JobRequirements, TokenAmount};
use fabstir_payments::{ApprovalPolicy, JobPayment, PaymentConfig, PaymentManager, TokenRegistry};

struct Setup {
    chain: LocalChain,
    proxy: RpcProxy,
    /// Connected through the proxy, which counts its calls.
    contracts: HeadlessContractManager,
    client: Arc<WalletSigner>,
}

async fn setup() -> Setup {
    let chain = LocalChain::start()
        .await
        .expect("the local chain (run `cargo xtask tools`)");
    let proxy = RpcProxy::start(chain.endpoint()).await.unwrap();
    let contracts = chain.connect(&proxy.url).await.unwrap();
    let client = contracts.signer(chain.client().wallet.clone());
    Setup {
        chain,
        proxy,
        contracts,
        client,
    }
}

fn manager(setup: &Setup) -> PaymentManager {
    let deployment = setup.chain.deployment();
    let usdc = deployment.token("USDC").unwrap().address();
    PaymentManager::new(
        setup.contracts.clone(),
        TokenRegistry::from_deployment(deployment),
        PaymentConfig {
            // One standing approval, as a regular user would have: the warm path is then a
            // single transaction.
            approval: ApprovalPolicy::Cap(BTreeMap::from([(
                usdc,
                TokenAmount::from_base_units(u64::MAX),
            )])),
            prefer_permit: false,
            block_poll_interval: Duration::from_secs(3600),
            ..PaymentConfig::default()
        },
    )
}

/// 100 tokens at 10 base units each, valid for a day.
async fn details(setup: &Setup) -> JobDetails {
    let chain = &setup.chain;
    chain
        .job_details("stories260K", "Once upon a time", 100, 10, 86_400)
        .await
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let setup = runtime.block_on(setup());
    let usdc = setup.chain.token("USDC").unwrap().clone();
    let warm = manager(&setup);
    let job = runtime.block_on(details(&setup));
    let payment = JobPayment::for_job(usdc, &job).unwrap();
    let submit = |payments: &PaymentManager| {
        let payments = payments.clone();
        let (job, payment, client) = (job.clone(), payment.clone(), setup.client.clone());
        async move {
            payments
                .submit_job(&job, &JobRequirements::default(), &payment, &client)
                .await
                .unwrap()
        }
    };

    // RPC round trips, counted once each (they do not vary between runs).
    runtime.block_on(async {
        let before = setup.proxy.total();
        let first = submit(&warm).await;
        let cold_first = setup.proxy.total() - before;
        let before = setup.proxy.total();
        submit(&warm).await;
        let warm_calls = setup.proxy.total() - before;
        let before = setup.proxy.total();
        submit(&manager(&setup)).await;
        let cold_calls = setup.proxy.total() - before;
        println!(
            "USDC submission RPC round trips: first ever (approval) {cold_first} ({} transactions), \
             cold cache {cold_calls}, warm cache {warm_calls}",
            first.transactions.len()
        );
    });

    let mut group = c.benchmark_group("usdc_submission");
    group.sample_size(20);
    group.bench_function("warm_cache", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    submit(&warm).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("cold_cache", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let cold = manager(&setup);
                    let start = Instant::now();
                    submit(&cold).await;
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
