//! The job flow end to end and every revert path of the marketplace.

use ethers::providers::Middleware as _;
use ethers::types::{Address, U256};
use fabstir_contracts::{Error, JobStatus, LOCAL_RULES, MarketplaceEvent};
use fabstir_core::{JobId, ModelId, TokenAmount};
use futures::StreamExt;

use crate::common::{CID, Env, MODEL, OTHER_MODEL, fails};

#[tokio::test]
async fn eth_job_end_to_end_with_exact_balances() {
    let env = Env::with_host().await;
    let eth = Address::zero();
    let (client, host, treasury) = (env.client.address(), env.host.address(), env.treasury);
    let before = env.parties(eth).await;

    // 100 tokens at 1 gwei each: 1e11 wei escrowed.
    let details = env.details(100, 1_000_000_000).await;
    let escrow = details.escrow_amount().expect("no overflow");
    let posted = env
        .manager
        .post_job(&details, &Env::assigned(&env.host), escrow, &env.client)
        .await
        .expect("posts");
    assert_eq!(
        fabstir_contracts::posted_block(posted.job),
        posted.tx.block,
        "a job id names its block"
    );
    assert_eq!(
        env.manager
            .job_terms(posted.job)
            .await
            .expect("terms")
            .client,
        client
    );
    let job = env.manager.job(posted.job).await.expect("job");
    assert_eq!(job.status, JobStatus::Posted);
    assert_eq!(job.amount, escrow);
    assert_eq!(job.details, details);
    assert_eq!(job.host, Some(host));
    assert_eq!(
        env.manager.escrow_balance(eth).await.expect("escrow"),
        escrow
    );

    let claim = env.claim(posted.job, &env.host).await;
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").status,
        JobStatus::Claimed
    );
    let settled = env.submit(posted.job, CID, 60, &env.host).await;

    // 60 tokens x 1 gwei = 6e10; fee 1% = 6e8; the host gets the rest; 4e10 goes back.
    let cost = U256::from(60u64) * U256::from(1_000_000_000u64);
    let fee = cost / 100;
    assert_eq!(settled.fee.base_units(), fee);
    assert_eq!(settled.paid.base_units(), cost - fee);
    assert_eq!(settled.refund.base_units(), escrow.base_units() - cost);
    let job = env.manager.job(posted.job).await.expect("job");
    assert_eq!(job.status, JobStatus::Completed);

    let after = env.parties(eth).await;
    let host_gas = claim.fee_wei() + settled.tx.fee_wei();
    assert_eq!(
        after.of(client),
        before.of(client) - cost - posted.tx.fee_wei(),
        "client pays cost + gas"
    );
    assert_eq!(
        after.of(host),
        before.of(host) + (cost - fee) - host_gas,
        "host gets cost - fee, minus its gas"
    );
    assert_eq!(
        after.of(treasury),
        before.of(treasury),
        "fees are not pushed"
    );
    assert_eq!(
        env.manager
            .accrued_fees(Address::zero())
            .await
            .expect("read"),
        TokenAmount(fee),
        "the fee accrues for the treasury exactly"
    );
    after.assert_conserved_since(&before, posted.tx.fee_wei() + host_gas);

    // The events tell the same story.
    let events = env.manager.job_events(posted.job, 0).await.expect("events");
    let kinds: Vec<&MarketplaceEvent> = events.iter().map(|e| &e.event).collect();
    assert!(
        matches!(kinds[0], MarketplaceEvent::JobPosted { host: Some(h), amount, .. } if *h == host && *amount == escrow)
    );
    assert!(matches!(kinds[1], MarketplaceEvent::JobClaimed { host: h, .. } if *h == host));
    assert!(matches!(
        kinds[2],
        MarketplaceEvent::JobCompleted { result_cid, paid, .. } if result_cid == CID && *paid == settled.paid
    ));
    env.finish().await;
}

#[tokio::test]
async fn usdc_job_end_to_end_with_exact_balances() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let (client, host, treasury) = (env.client.address(), env.host.address(), env.treasury);
    let before = env.parties(usdc).await;
    // 500 tokens at 0.000013 USDC each = 0.0065 USDC.
    let (_, posted, amount) = env.post_token_job(usdc, 500, 13).await;
    assert_eq!(env.manager.job(posted.job).await.expect("job").host, None);
    let (_, settled) = env.settle(posted.job, CID, 333).await;
    let cost = U256::from(333u64 * 13);
    let fee = cost / 100; // 43.29 -> 43 base units
    assert_eq!(fee, U256::from(43u64));
    assert_eq!(settled.paid.base_units(), cost - fee);
    assert_eq!(settled.refund.base_units(), amount.base_units() - cost);
    let after = env.parties(usdc).await;
    assert_eq!(after.of(client), before.of(client) - cost);
    assert_eq!(after.of(host), before.of(host) + cost - fee);
    assert_eq!(after.of(treasury), before.of(treasury));
    assert_eq!(
        env.manager.accrued_fees(usdc).await.expect("read"),
        TokenAmount(fee)
    );
    after.assert_conserved_since(&before, U256::zero());
    env.finish().await;
}

#[tokio::test]
async fn permit_posting_is_one_transaction() {
    let env = Env::new().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let nonce_before = env.chain.nonce(client).await.expect("nonce");
    let balance_before = env.balance(usdc, client).await;
    let details = env.details(100, 25).await;
    let amount = details.escrow_amount().expect("no overflow");
    let posted = env
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
    let nonce_after = env.chain.nonce(client).await.expect("nonce");
    assert_eq!(nonce_after, nonce_before + 1, "exactly one transaction");
    assert_eq!(
        env.balance(usdc, client).await,
        balance_before - amount.base_units()
    );
    let spender = env.manager.payment_spender();
    assert_eq!(
        env.manager
            .allowance(usdc, client, spender)
            .await
            .expect("allowance"),
        TokenAmount::ZERO,
        "the permit's allowance was used up"
    );
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").amount,
        amount
    );
    env.finish().await;
}

#[tokio::test]
async fn cancel_refunds_in_full_and_only_the_client_may_cancel() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let before = env.balance(usdc, client).await;
    let (_, posted, _) = env.post_token_job(usdc, 100, 7).await;
    fails!(
        env.manager.cancel_job(posted.job, &env.other),
        Error::NotClient { job, client: c, caller }
            if job == posted.job && c == client && caller == env.other.address()
    );
    env.manager
        .cancel_job(posted.job, &env.client)
        .await
        .expect("cancels");
    assert_eq!(env.balance(usdc, client).await, before, "refunded in full");
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").status,
        JobStatus::Cancelled
    );
    fails!(
        env.manager.cancel_job(posted.job, &env.client),
        Error::InvalidJobStatus {
            status: JobStatus::Cancelled,
            ..
        }
    );
    fails!(
        env.manager.claim_job(posted.job, &env.host),
        Error::InvalidJobStatus { .. }
    );

    // ETH: the refund is exact too, the client only pays gas.
    let eth = Address::zero();
    let before = env.balance(eth, client).await;
    let (posted, _) = env.post_open_eth_job(10, 1_000).await;
    // A claimed job cannot be cancelled.
    env.claim(posted.job, &env.host).await;
    fails!(
        env.manager.cancel_job(posted.job, &env.client),
        Error::JobAlreadyClaimed { claimer, .. } if claimer == env.host.address()
    );
    env.manager
        .release_job(posted.job, &env.host)
        .await
        .expect("host releases");
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").status,
        JobStatus::Released
    );
    let spent_gas = posted.tx.fee_wei();
    // The failed cancel was rejected at estimation and cost nothing.
    assert_eq!(
        env.balance(eth, client).await,
        before - spent_gas,
        "refunded in full"
    );
    env.finish().await;
}

#[tokio::test]
async fn expiry_refunds_in_full_and_late_submit_reverts() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let before = env.balance(usdc, client).await;
    let (details, posted, amount) = env.post_token_job(usdc, 100, 9).await;
    env.claim(posted.job, &env.host).await;
    fails!(
        env.manager.expire_job(posted.job, &env.other),
        Error::DeadlineNotReached { deadline, .. }
            if deadline == details.deadline + LOCAL_RULES.submit_grace
    );

    env.pass_an_hour().await;
    let err = fails!(
        env.manager.submit_result(posted.job, CID, &env.receipt(posted.job, 10), &env.host),
        Error::DeadlinePassed { job, .. } if job == posted.job
    );
    assert!(err.to_string().contains("has passed"), "{err}");

    // Anyone may expire it; the client gets everything back.
    env.manager
        .expire_job(posted.job, &env.other)
        .await
        .expect("expires");
    assert_eq!(env.balance(usdc, client).await, before);
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").status,
        JobStatus::Expired
    );
    fails!(
        env.manager.expire_job(posted.job, &env.other),
        Error::InvalidJobStatus {
            status: JobStatus::Expired,
            ..
        }
    );

    // An unclaimed job past its deadline can be expired too, and no longer claimed.
    let details = env.details(100, 9).await;
    let posted = env.post_open_token_job(&details, usdc, amount).await;
    env.pass_an_hour().await;
    fails!(
        env.manager.claim_job(posted.job, &env.host),
        Error::DeadlinePassed { .. }
    );
    env.manager
        .expire_job(posted.job, &env.client)
        .await
        .expect("expires");
    assert_eq!(env.balance(usdc, client).await, before);
    env.finish().await;
}

#[tokio::test]
async fn unregistered_or_wrong_host_cannot_claim() {
    let env = Env::with_host().await;
    env.register(&env.host2, 2, &[OTHER_MODEL]).await;

    // Unregistered.
    let (open, _) = env.post_open_eth_job(10, 1_000).await;
    fails!(
        env.manager.claim_job(open.job, &env.other),
        Error::HostNotEligible { host, model }
            if host == env.other.address() && model == ModelId::from_name(MODEL)
    );
    // Registered, but not serving the model.
    fails!(
        env.manager.claim_job(open.job, &env.host2),
        Error::HostNotEligible { .. }
    );

    // Assigned to another host (at its registered ETH price).
    let details = env.details(10, 1_000_000_000).await;
    let value = details.escrow_amount().expect("no overflow");
    let assigned = env
        .manager
        .post_job(&details, &Env::assigned(&env.host), value, &env.client)
        .await
        .expect("posts");
    env.manager
        .update_models(&[ModelId::from_name(MODEL)], &env.host2)
        .await
        .expect("host2 now serves the model");
    let err = fails!(
        env.manager.claim_job(assigned.job, &env.host2),
        Error::NotAssignedHost { assigned: a, caller, .. }
            if a == env.host.address() && caller == env.host2.address()
    );
    assert!(err.to_string().contains("is assigned to"), "{err}");
    // Unknown job.
    fails!(
        env.manager.claim_job(JobId(99), &env.host),
        Error::JobNotFound(JobId(99))
    );
    assert!(matches!(
        env.manager.job(JobId(99)).await,
        Err(Error::JobNotFound(JobId(99)))
    ));
    // An unregistered host cannot claim even its own assigned job.
    env.manager
        .unregister_node(&env.host)
        .await
        .expect("unregisters");
    fails!(
        env.manager.claim_job(assigned.job, &env.host),
        Error::HostNotEligible { .. }
    );
    env.finish().await;
}

#[tokio::test]
async fn double_claim_and_bad_submits_revert() {
    let env = Env::with_host().await;
    env.register(&env.host2, 2, &[MODEL]).await;
    let (posted, _) = env.post_open_eth_job(50, 1_000).await;
    let job = posted.job;
    env.claim(job, &env.host).await;
    let err = fails!(
        env.manager.claim_job(job, &env.host2),
        Error::JobAlreadyClaimed { job: j, claimer } if j == job && claimer == env.host.address()
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("job {job} already claimed by 0x")),
        "{message}"
    );
    fails!(
        env.manager.claim_job(job, &env.host),
        Error::JobAlreadyClaimed { .. }
    );

    fails!(
        env.manager.submit_result(job, CID, &env.receipt(job, 10), &env.host2),
        Error::NotClaimer { claimer, .. } if claimer == env.host.address()
    );
    fails!(
        env.manager
            .submit_result(job, CID, &env.receipt(job, 51), &env.host),
        Error::TokensExceedMax { max_tokens: 50, .. }
    );
    fails!(
        env.manager
            .submit_result(job, b"", &env.receipt(job, 10), &env.host),
        Error::InvalidResultCid
    );
    env.submit(job, CID, 50, &env.host).await;
    fails!(
        env.manager
            .submit_result(job, CID, &env.receipt(job, 50), &env.host),
        Error::InvalidJobStatus {
            status: JobStatus::Completed,
            ..
        }
    );
    env.finish().await;
}

#[tokio::test]
async fn invalid_posts_revert_with_named_errors() {
    let env = Env::new().await;
    let details = env.details(10, 1_000).await;
    let value = details.escrow_amount().expect("no overflow");
    let (open, client) = (Env::open(), &env.client);
    let unknown = Address::repeat_byte(0x42);
    let err = fails!(
        env.manager.post_job_with_token(&details, &open, unknown, value, client),
        Error::TokenNotAccepted(t) if t == unknown
    );
    assert!(err.to_string().contains("not accepted"), "{err}");
    fails!(
        env.manager
            .post_job(&details, &open, TokenAmount::ZERO, client),
        Error::WrongAmount { .. }
    );
    let mut late = details.clone();
    late.deadline = env.now().await;
    fails!(
        env.manager.post_job(&late, &open, value, client),
        Error::InvalidDeadline { .. }
    );
    let mut empty = details.clone();
    empty.max_tokens = 0;
    fails!(
        env.manager.post_job(&empty, &open, value, client),
        Error::InvalidJobDetails
    );

    // The owner manages the accepted list; others cannot.
    let dai = env.token("DAI");
    fails!(
        env.manager.set_token_accepted(dai, false, client),
        Error::NotOwner(a) if a == client.address()
    );
    env.manager
        .set_token_accepted(dai, false, &env.owner)
        .await
        .expect("owner removes DAI");
    assert!(!env.manager.is_token_accepted(dai).await.expect("read"));
    let accepted = env.manager.accepted_tokens().await.expect("list");
    assert_eq!(accepted.len(), 4);
    assert!(accepted.contains(&Address::zero()));
    fails!(
        env.manager.post_job_with_token(&details, &open, dai, value, client),
        Error::TokenNotAccepted(t) if t == dai
    );
    fails!(
        env.manager.set_fee_bps(5_000, &env.owner),
        Error::FeeTooHigh(5_000)
    );
    env.finish().await;
}

#[tokio::test]
async fn events_stream_as_they_happen() {
    let env = Env::with_host().await;
    let from = env
        .manager
        .provider()
        .get_block_number()
        .await
        .expect("block")
        .as_u64()
        + 1;
    let mut events = Box::pin(env.manager.watch_events(from));
    let (posted, _) = env.post_open_eth_job(10, 1_000).await;
    env.claim(posted.job, &env.host).await;
    let mut next = async || {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("in time")
            .expect("stream open")
            .expect("no error")
    };
    let first = next().await;
    assert!(
        matches!(first.event, MarketplaceEvent::JobPosted { job, client, .. } if job == posted.job && client == env.client.address()),
        "{first:?}"
    );
    let second = next().await;
    assert_eq!(second.event.job(), Some(posted.job));
    assert!(matches!(second.event, MarketplaceEvent::JobClaimed { .. }));
    let past = env.manager.past_events(from, None).await.expect("past");
    assert_eq!(past.len(), 2);
    env.finish().await;
}

#[tokio::test]
async fn a_claim_overtaken_in_the_pool_reverts_on_chain_naming_the_winner() {
    use ethers::abi::AbiEncode as _;
    use fabstir_contracts::anvil::{mine, send_ahead, set_automine, wait_for_pending};
    use fabstir_contracts::bindings::job_marketplace::ClaimJobCall;

    let env = Env::with_host().await;
    env.register(&env.host2, 2, &[MODEL]).await;
    let (posted, value) = env.post_open_eth_job(50, 1_000).await;
    let eth = Address::zero();
    let loser_before = env.balance(eth, env.host2.address()).await;

    // host2's claim passes its gas estimate and waits in the pool; host's claim, sent after
    // it with a higher tip, is mined first in the same block.
    let provider = env.chain.anvil().provider().expect("provider");
    set_automine(&provider, false).await.expect("automine off");
    let race = async {
        let limit = std::time::Duration::from_secs(10);
        wait_for_pending(&provider, 1, limit)
            .await
            .expect("host2's claim is pooled");
        let claim = ClaimJobCall {
            job_id: posted.job.0.into(),
            terms: env.manager.job_terms(posted.job).await.expect("terms"),
        };
        send_ahead(
            &provider,
            env.host.address(),
            env.deployment.contracts.job_marketplace,
            claim.encode().into(),
        )
        .await
        .expect("host's claim is sent");
        wait_for_pending(&provider, 2, limit)
            .await
            .expect("host's claim is pooled");
        mine(&provider).await.expect("mines");
    };
    let (lost, ()) = tokio::join!(env.manager.claim_job(posted.job, &env.host2), race);
    set_automine(&provider, true).await.expect("automine on");

    let err = lost.unwrap_err();
    let Error::TxFailed {
        gas_used,
        effective_gas_price,
        reason,
        ..
    } = &err
    else {
        panic!("not a mined revert: {err}");
    };
    assert!(
        matches!(
            reason.as_deref(),
            Some(Error::JobAlreadyClaimed { job, claimer })
                if *job == posted.job && *claimer == env.host.address()
        ),
        "the replay names the winner: {err}"
    );
    assert!(err.to_string().contains("reverted on chain"), "{err}");
    // The loser paid its gas and nothing else; the job is the winner's, its escrow intact.
    assert_eq!(
        env.balance(eth, env.host2.address()).await,
        loser_before - *gas_used * *effective_gas_price
    );
    let job = env.manager.job(posted.job).await.expect("job");
    assert_eq!(job.status, JobStatus::Claimed);
    assert_eq!(job.host, Some(env.host.address()));
    assert_eq!(job.amount, value);
    env.finish().await;
}

#[tokio::test]
async fn identical_posts_in_one_block_get_distinct_ids() {
    use ethers::contract::parse_log;
    use fabstir_contracts::anvil::{mine, set_automine, wait_for_pending};
    use fabstir_contracts::bindings::job_marketplace::{JobMarketplace, JobPostedFilter};

    let env = Env::new().await;
    let provider = env.chain.anvil().provider().expect("provider");
    let market = JobMarketplace::new(env.deployment.contracts.job_marketplace, env.client.clone());
    let details = env.details(10, 1_000).await;
    let value = details.escrow_amount().expect("no overflow").base_units();
    let nonce = env.chain.nonce(env.client.address()).await.expect("nonce");
    // The same client, the same prompt, the same block: the id's low bits start equal.
    set_automine(&provider, false).await.expect("automine off");
    let mut pending = Vec::new();
    for i in 0..2u64 {
        let call = market
            .post_job(
                crate::common::abi_details(&details),
                fabstir_contracts::bindings::job_marketplace::JobRequirements {
                    host: Address::zero(),
                },
            )
            .value(value)
            .nonce(nonce + i);
        let sent = call.send().await.expect("sends");
        pending.push(sent.tx_hash());
    }
    wait_for_pending(&provider, 2, std::time::Duration::from_secs(10))
        .await
        .expect("both are pooled");
    mine(&provider).await.expect("mines");
    set_automine(&provider, true).await.expect("automine on");
    let mut ids = Vec::new();
    for hash in pending {
        let receipt = provider
            .get_transaction_receipt(hash)
            .await
            .expect("receipt")
            .expect("mined");
        assert_eq!(receipt.status, Some(1u64.into()), "both posts succeed");
        let posted: JobPostedFilter = receipt
            .logs
            .into_iter()
            .find_map(|log| parse_log(log).ok())
            .expect("JobPosted");
        ids.push(JobId::from_u256(posted.job_id).expect("a 64-bit id"));
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[1].0, ids[0].0 + 1, "the second moved on past the first");
    assert_eq!(
        fabstir_contracts::posted_block(ids[0]),
        fabstir_contracts::posted_block(ids[1])
    );
    for id in ids {
        assert_eq!(
            env.manager.job(id).await.expect("job").status,
            JobStatus::Posted
        );
    }
    env.finish().await;
}
