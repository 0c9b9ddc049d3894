//! RPC round trips and wall time of a USDC job submission, with a cold and a warm cache, on
//! a real anvil chain. The RPC counts are printed (they are deterministic); criterion measures
//! the time.

#![allow(clippy::unwrap_used, missing_docs)] // Set-up failures abort; criterion generates items.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ethers::providers::Middleware as _;
use ethers::signers::Signer as _;
use ethers::types::BlockNumber;
use fabstir_contracts::anvil::{Anvil, RpcProxy};
use fabstir_contracts::{HeadlessContractManager, LocalDeployConfig, ManagerConfig, deploy_local};
use fabstir_core::job::prompt_hash;
use fabstir_core::{Deployment, JobDetails, JobRequirements, ModelId, TokenAmount};
use fabstir_payments::{ApprovalPolicy, JobPayment, PaymentConfig, PaymentManager, TokenRegistry};

struct Setup {
    _anvil: Anvil,
    proxy: RpcProxy,
    deployment: Deployment,
    contracts: HeadlessContractManager,
    client: Arc<fabstir_contracts::WalletSigner>,
}

async fn setup() -> Setup {
    let anvil = Anvil::spawn().expect("anvil (run `cargo xtask tools`)");
    let deployer = Arc::new(ethers::middleware::SignerMiddleware::new(
        anvil.provider().unwrap(),
        anvil.wallet(0).unwrap().with_chain_id(anvil.chain_id()),
    ));
    let config = LocalDeployConfig {
        fund: vec![anvil.wallet(1).unwrap().address()],
        ..LocalDeployConfig::default()
    };
    let deployment = deploy_local(&deployer, &config).await.unwrap();
    let proxy = RpcProxy::start(anvil.endpoint()).await.unwrap();
    let contracts =
        HeadlessContractManager::connect(&proxy.url, &deployment, &ManagerConfig::local())
            .await
            .unwrap();
    let client = contracts.signer(anvil.wallet(1).unwrap());
    Setup {
        _anvil: anvil,
        proxy,
        deployment,
        contracts,
        client,
    }
}

fn manager(setup: &Setup) -> PaymentManager {
    let usdc = setup.deployment.token("USDC").unwrap().address();
    PaymentManager::new(
        setup.contracts.clone(),
        TokenRegistry::from_deployment(&setup.deployment),
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

async fn details(setup: &Setup) -> JobDetails {
    let now = setup
        .contracts
        .provider()
        .get_block(BlockNumber::Latest)
        .await
        .unwrap()
        .unwrap()
        .timestamp
        .as_u64();
    JobDetails {
        model: ModelId::from_name("stories260K"),
        prompt_hash: prompt_hash("Once upon a time"),
        max_tokens: 100,
        price_per_token: TokenAmount::from_base_units(10u64),
        deadline: now + 86_400,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let setup = runtime.block_on(setup());
    let usdc = setup.deployment.token("USDC").unwrap().clone();
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
