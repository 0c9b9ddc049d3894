//! Gas used per operation, printed for docs/PERFORMANCE.md. Gas is deterministic, so the
//! 250k target for a complete ERC-20 job is asserted.

use ethers::types::U256;
use fabstir_contracts::TxInfo;

use crate::common::{Env, MODEL};

/// A CIDv1 (raw, sha2-256) in its text form, as a host would submit it.
const CID: &[u8] = b"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

/// The target for post + claim + submit of an ERC-20 job with the approval already given.
const ERC20_JOB_TARGET: u64 = 250_000;

#[tokio::test]
async fn gas_per_operation() {
    let env = Env::new().await;
    let stake = env.manager.min_stake().await.expect("min stake");
    let fab = env.deployment.stake_token;
    env.manager
        .approve(
            fab,
            env.deployment.contracts.node_registry,
            stake,
            &env.host,
        )
        .await
        .expect("approves stake");
    let register = register_gas(&env).await;
    let usdc = env.token("USDC");
    let gas = |tx: &TxInfo| tx.gas_used.as_u64();

    // A full ERC-20 job twice. The first touches fresh storage everywhere (the escrow's, the
    // host's and the treasury's USDC balances go from zero, the model gets its index). The
    // second is the steady state the target is about: another job's funds are in escrow, and
    // host and treasury already hold USDC.
    env.approve_spender(&env.client, usdc, U256::MAX).await;
    let mut jobs = Vec::new();
    for round in 0..2 {
        if round == 1 {
            let details = env.details(1_000, 10).await;
            let amount = details.escrow_amount().expect("no overflow");
            env.manager
                .post_job_with_token(&details, &Env::open(), usdc, amount, &env.client)
                .await
                .expect("posts a job that stays open");
        }
        let details = env.details(1_000, 10).await;
        let amount = details.escrow_amount().expect("no overflow");
        let posted = env
            .manager
            .post_job_with_token(&details, &Env::open(), usdc, amount, &env.client)
            .await
            .expect("posts");
        let claim = env
            .manager
            .claim_job(posted.job, &env.host)
            .await
            .expect("claims");
        let submit = env
            .manager
            .submit_result(posted.job, CID, 700, &env.host)
            .await
            .expect("submits");
        jobs.push((gas(&posted.tx), gas(&claim), gas(&submit.tx)));
    }

    let details = env.details(1_000, 1_000_000_000).await;
    let value = details.escrow_amount().expect("no overflow");
    let eth_post = env
        .manager
        .post_job(&details, &Env::open(), value, &env.client)
        .await
        .expect("posts ETH");
    let cancel = env
        .manager
        .cancel_job(eth_post.job, &env.client)
        .await
        .expect("cancels");
    let details = env.details(1_000, 10).await;
    let amount = details.escrow_amount().expect("no overflow");
    let permit = env
        .manager
        .post_job_with_permit(
            &details,
            &Env::open(),
            usdc,
            amount,
            details.deadline,
            &env.client,
        )
        .await
        .expect("posts with permit");

    let (cold, warm) = (jobs[0], jobs[1]);
    let total = |j: (u64, u64, u64)| j.0 + j.1 + j.2;
    println!("| operation | gas |");
    println!("|---|---:|");
    println!("| register (stake approved) | {register} |");
    println!("| postJob (ETH) | {} |", gas(&eth_post.tx));
    println!(
        "| postJobWithToken (USDC, approved) | {} (first), {} (steady) |",
        cold.0, warm.0
    );
    println!("| postJobWithPermit (USDC) | {} |", gas(&permit.tx));
    println!("| claimJob | {} (first), {} (steady) |", cold.1, warm.1);
    println!(
        "| submitResult (USDC) | {} (first), {} (steady) |",
        cold.2, warm.2
    );
    println!("| cancelJob (ETH) | {} |", gas(&cancel));
    println!(
        "| ERC-20 job total (post + claim + submit) | {} (first), {} (steady) |",
        total(cold),
        total(warm)
    );
    assert!(
        total(warm) < ERC20_JOB_TARGET,
        "steady ERC-20 job used {} gas",
        total(warm)
    );
    env.finish().await;
}

async fn register_gas(env: &Env) -> u64 {
    env.register(&env.host, 1, &[MODEL]).await;
    // `register` is the last transaction the host sent; find its receipt through the events
    // of the registry block.
    let provider = env.manager.provider();
    let block = ethers::providers::Middleware::get_block_with_txs(
        provider.as_ref(),
        ethers::types::BlockNumber::Latest,
    )
    .await
    .expect("block")
    .expect("latest");
    let tx = block.transactions.last().expect("register tx");
    let receipt =
        ethers::providers::Middleware::get_transaction_receipt(provider.as_ref(), tx.hash)
            .await
            .expect("receipt")
            .expect("mined");
    receipt.gas_used.expect("gas").as_u64()
}
