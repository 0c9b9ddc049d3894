//! One test per cheat the marketplace must refuse, each written as the attack: the attacker's
//! transaction against the real contracts on anvil, and the money outcome to the base unit.
//! `docs/THREAT_MODEL.md` maps each to its defence.

use ethers::types::{Address, U256};
use fabstir_contracts::bindings::job_marketplace::JobMarketplace;
use fabstir_contracts::bindings::test_fee_token::TestFeeToken;
use fabstir_contracts::{Error, JobStatus, LOCAL_RULES};
use fabstir_core::TokenAmount;

use crate::common::{CID, Env, fails, mined};

/// A client posts 1 wei for 1,000 tokens (the host would work for 1 wei), a zero price, or
/// more than the terms: every post must escrow exactly `max_tokens x price`.
#[tokio::test]
async fn underfunded_overfunded_and_zero_price_posts_revert() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let (open, client) = (Env::open(), &env.client);
    let before = env.balance(usdc, client.address()).await;
    let details = env.details(1_000, 10).await;
    let exact = details.escrow_amount().expect("no overflow");
    for amount in [1u64, 9_999, 10_001] {
        let amount = TokenAmount::from_base_units(amount);
        env.approve_spender(client, usdc, amount.base_units()).await;
        fails!(
            env.manager.post_job_with_token(&details, &open, usdc, amount, client),
            Error::WrongAmount { expected, amount: a }
                if expected == exact.base_units() && a == amount.base_units()
        );
    }
    fails!(
        env.manager
            .post_job(&details, &open, TokenAmount::from_base_units(1u64), client),
        Error::WrongAmount { .. }
    );
    let mut free = details.clone();
    free.price_per_token = TokenAmount::ZERO;
    fails!(
        env.manager
            .post_job(&free, &open, TokenAmount::ZERO, client),
        Error::ZeroPrice
    );
    assert_eq!(env.balance(usdc, client.address()).await, before);
    env.finish().await;
}

/// A client names a host and offers less than the host's registered price, or a token the
/// host does not price: the registry's price is the floor.
#[tokio::test]
async fn a_named_hosts_registered_price_is_the_floor() {
    let env = Env::with_host().await;
    let (usdc, dai) = (env.token("USDC"), env.token("DAI"));
    let host = Env::assigned(&env.host);
    // The host asks 10 per USDC token (see `Env::register`).
    let cheap = env.details(100, 9).await;
    let amount = cheap.escrow_amount().expect("no overflow");
    env.approve_spender(&env.client, usdc, amount.base_units())
        .await;
    fails!(
        env.manager.post_job_with_token(&cheap, &host, usdc, amount, &env.client),
        Error::BelowHostPrice { host: h, host_price, price }
            if h == env.host.address() && host_price == U256::from(10u64) && price == U256::from(9u64)
    );
    fails!(
        env.manager.post_job_with_token(&cheap, &host, dai, amount, &env.client),
        Error::BelowHostPrice { host_price, .. } if host_price.is_zero()
    );
    let fair = env.details(100, 10).await;
    let amount = fair.escrow_amount().expect("no overflow");
    env.approve_spender(&env.client, usdc, amount.base_units())
        .await;
    env.manager
        .post_job_with_token(&fair, &host, usdc, amount, &env.client)
        .await
        .expect("at the host's price");
    env.finish().await;
}

/// A client picks a deadline so short that the host cannot settle before it, keeps the text
/// and expires the job: a job lasts at least the marketplace's minimum.
#[tokio::test]
async fn too_short_a_deadline_reverts() {
    let env = Env::with_host().await;
    let mut details = env.details(10, 1_000_000_000).await;
    let value = details.escrow_amount().expect("no overflow");
    details.deadline = env.now().await + LOCAL_RULES.min_job_duration - 1;
    fails!(
        env.manager
            .post_job(&details, &Env::open(), value, &env.client),
        Error::InvalidDeadline { deadline, .. } if deadline == details.deadline
    );
    env.finish().await;
}

/// A client waits until the deadline passes and expires the job the host has just served.
/// The host may still settle during the grace period, and nobody can expire it before then.
#[tokio::test]
async fn a_host_streaming_until_the_deadline_is_paid_during_the_grace_period() {
    let env = Env::with_host().await;
    let price = 1_000_000_000u64;
    let (posted, value) = env.post_open_eth_job(10, price).await;
    env.claim(posted.job, &env.host).await;
    let deadline = env
        .manager
        .job(posted.job)
        .await
        .expect("job")
        .details
        .deadline;
    let now = env.now().await;
    env.chain
        .advance_time(deadline - now + LOCAL_RULES.submit_grace / 2)
        .await
        .expect("time passes");
    fails!(
        env.manager.expire_job(posted.job, &env.client),
        Error::DeadlineNotReached { deadline: end, .. }
            if end == deadline + LOCAL_RULES.submit_grace
    );
    let before = env.parties(Address::zero()).await;
    let settled = env.submit(posted.job, CID, 10, &env.host).await;
    let cost = U256::from(10 * price);
    let fee = cost / 100;
    assert_eq!(settled.paid.base_units(), cost - fee);
    assert_eq!(settled.refund, TokenAmount::ZERO);
    let after = env.parties(Address::zero()).await;
    assert_eq!(
        after.of(env.host.address()) + settled.tx.fee_wei() - before.of(env.host.address()),
        cost - fee
    );
    assert_eq!(value.base_units(), cost);
    env.finish().await;
}

/// A host claims a job and goes silent, locking the client's escrow until the deadline. The
/// client asks to close; the host has the close window to settle, then the client is refunded
/// in full.
#[tokio::test]
async fn a_silent_host_lets_the_client_close_after_the_window() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let before = env.balance(usdc, client).await;
    let (_, posted, amount) = env.post_token_job(usdc, 100, 10).await;
    env.claim(posted.job, &env.host).await;
    fails!(
        env.manager.request_close(posted.job, &env.other),
        Error::NotClient { caller, .. } if caller == env.other.address()
    );
    env.manager
        .request_close(posted.job, &env.client)
        .await
        .expect("asks to close");
    let job = env.manager.job(posted.job).await.expect("job");
    assert_eq!(job.status, JobStatus::Closing);
    assert!(job.details.deadline <= env.now().await + LOCAL_RULES.close_window);
    fails!(
        env.manager.expire_job(posted.job, &env.client),
        Error::DeadlineNotReached { .. }
    );
    env.chain
        .advance_time(LOCAL_RULES.close_window + 1)
        .await
        .expect("time passes");
    fails!(
        env.manager
            .submit_result(posted.job, CID, &env.receipt(posted.job, 100), &env.host),
        Error::DeadlinePassed { .. }
    );
    env.manager
        .expire_job(posted.job, &env.client)
        .await
        .expect("expires");
    assert_eq!(env.balance(usdc, client).await, before);
    assert_eq!(amount, TokenAmount::from_base_units(1_000u64));
    assert_eq!(
        env.manager
            .open_claims(env.host.address())
            .await
            .expect("read"),
        0
    );

    // A host that is not silent settles within the window.
    let (_, posted, _) = env.post_token_job(usdc, 100, 10).await;
    env.claim(posted.job, &env.host).await;
    env.manager
        .request_close(posted.job, &env.client)
        .await
        .expect("asks to close");
    let settled = env.submit(posted.job, CID, 40, &env.host).await;
    assert_eq!(
        settled.paid.base_units() + settled.fee.base_units(),
        U256::from(400u64)
    );
    assert_eq!(settled.refund.base_units(), U256::from(600u64));
    env.finish().await;
}

/// A treasury that rejects ETH used to make every ETH settlement revert. Fees now accrue
/// and the treasury withdraws them; nothing waits on it.
#[tokio::test]
async fn a_treasury_that_rejects_eth_blocks_nothing_and_the_fee_accrues() {
    let env = Env::with_host().await;
    let rejecting = env.token("USDT"); // a contract without a receive function
    env.manager
        .set_treasury(rejecting, &env.owner)
        .await
        .expect("sets treasury");
    let price = 1_000_000_000u64;
    let (posted, _) = env.post_open_eth_job(10, price).await;
    let (_, settled) = env.settle(posted.job, CID, 7).await;
    let fee = U256::from(7 * price) / 100;
    assert_eq!(settled.fee.base_units(), fee);
    assert_eq!(
        env.manager
            .accrued_fees(Address::zero())
            .await
            .expect("read"),
        TokenAmount(fee)
    );
    env.finish().await;
}

/// The owner raises the fee between a job's post and its settlement: the job keeps the rate
/// it was posted at.
#[tokio::test]
async fn a_fee_change_between_post_and_submit_leaves_the_posted_rate() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let (_, posted, _) = env.post_token_job(usdc, 1_000, 10).await;
    env.claim(posted.job, &env.host).await;
    env.manager
        .set_fee_bps(1_000, &env.owner)
        .await
        .expect("raises the fee to 10%");
    let settled = env.submit(posted.job, CID, 1_000, &env.host).await;
    assert_eq!(settled.fee.base_units(), U256::from(100u64), "1% of 10,000");
    assert_eq!(settled.paid.base_units(), U256::from(9_900u64));
    let (_, later, _) = env.post_token_job(usdc, 1_000, 10).await;
    let (_, settled) = env.settle(later.job, CID, 1_000).await;
    assert_eq!(
        settled.fee.base_units(),
        U256::from(1_000u64),
        "10% for a later job"
    );
    env.finish().await;
}

/// A fee-on-transfer token delivers less than the job records, so the last jobs to settle
/// would find the escrow short. The marketplace measures what arrived and refuses it.
#[tokio::test]
async fn a_fee_on_transfer_token_is_refused() {
    let mut env = Env::with_host().await;
    let token = TestFeeToken::deploy(env.owner.clone(), ())
        .expect("deployer")
        .send()
        .await
        .expect("deploys");
    env.extra_tokens.push(token.address());
    env.manager
        .set_token_accepted(token.address(), true, &env.owner)
        .await
        .expect("the owner lists it (the worst case)");
    mined(token.mint(env.client.address(), U256::from(10_000u64))).await;
    let details = env.details(100, 10).await;
    let amount = details.escrow_amount().expect("no overflow");
    env.approve_spender(&env.client, token.address(), amount.base_units())
        .await;
    fails!(
        env.manager.post_job_with_token(&details, &Env::open(), token.address(), amount, &env.client),
        Error::TransferShortfall { amount: a, received, .. }
            if a == U256::from(1_000u64) && received == U256::from(990u64)
    );
    assert_eq!(
        env.balance(token.address(), env.client.address()).await,
        U256::from(10_000u64)
    );
    env.finish().await;
}

/// Someone watching the mempool submits the client's permit first, so the marketplace's own
/// `permit` call fails: the post must still succeed on the allowance the permit set.
#[tokio::test]
async fn a_front_run_permit_still_lets_the_post_succeed() {
    let env = Env::new().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let before = env.balance(usdc, client).await;
    let details = env.details(100, 25).await;
    let amount = details.escrow_amount().expect("no overflow");
    let spender = env.manager.payment_spender();
    let signature = env
        .manager
        .sign_permit(usdc, spender, amount, details.deadline, env.client.signer())
        .await
        .expect("signs");
    // The attacker replays the permit straight to the token.
    let token = fabstir_contracts::bindings::erc20::Erc20Permit::new(usdc, env.other.clone());
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    signature.r.to_big_endian(&mut r);
    signature.s.to_big_endian(&mut s);
    let v = u8::try_from(signature.v).expect("v");
    mined(token.permit(
        client,
        spender,
        amount.base_units(),
        U256::from(details.deadline),
        v,
        r,
        s,
    ))
    .await;
    let posted = env
        .manager
        .post_job_with_permit_signature(
            &details,
            &Env::open(),
            usdc,
            amount,
            details.deadline,
            &signature,
            &env.client,
        )
        .await
        .expect("posts despite the front-run");
    assert_eq!(
        env.balance(usdc, client).await,
        before - amount.base_units()
    );
    assert_eq!(
        env.manager.job(posted.job).await.expect("job").amount,
        amount
    );
    env.finish().await;
}

/// A stolen or careless owner key renounces ownership or hands it to a typo: ownership moves
/// in two steps and cannot be renounced.
#[tokio::test]
async fn ownership_moves_in_two_steps_and_cannot_be_renounced() {
    let env = Env::new().await;
    let address = env.deployment.contracts.job_marketplace;
    let as_owner = JobMarketplace::new(address, env.owner.clone());
    let err = as_owner.renounce_ownership().send().await.unwrap_err();
    assert!(
        matches!(Error::from_contract(err), Error::RenounceDisabled),
        "renounce must revert"
    );
    mined(as_owner.transfer_ownership(env.other.address())).await;
    assert_eq!(
        as_owner.owner().call().await.expect("owner"),
        env.owner.address(),
        "nothing moves until the new owner accepts"
    );
    mined(JobMarketplace::new(address, env.other.clone()).accept_ownership()).await;
    assert_eq!(
        as_owner.owner().call().await.expect("owner"),
        env.other.address()
    );
    env.finish().await;
}

/// A host claims a job and settles it with `maxTokens` without streaming, or with a receipt
/// it made up: settlement pays only a receipt the job's client signed, for this job, chain and
/// contract. Forgeries revert and move nothing; the real receipt then settles.
#[tokio::test]
async fn forged_receipts_are_refused_and_only_the_clients_count_is_paid() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let (_, posted, amount) = env.post_token_job(usdc, 100, 10).await;
    let (_, other, _) = env.post_token_job(usdc, 100, 10).await;
    env.claim(posted.job, &env.host).await;
    let job = posted.job;
    let host_key = env.chain.hosts()[0].wallet.signer();
    let client_key = env.chain.client().wallet.signer();
    let other_chain = fabstir_core::receipt::ReceiptDomain {
        chain_id: 1,
        ..env.domain()
    };
    let other_contract = fabstir_core::receipt::ReceiptDomain {
        marketplace: Address::repeat_byte(0x42),
        ..env.domain()
    };
    let forgeries = [
        (
            "signed by the host itself",
            env.receipt_by(host_key, job, 100, env.domain()),
        ),
        (
            "for another job",
            env.receipt_by(client_key, other.job, 100, env.domain()),
        ),
        (
            "for another chain",
            env.receipt_by(client_key, job, 100, other_chain),
        ),
        (
            "for another contract",
            env.receipt_by(client_key, job, 100, other_contract),
        ),
    ];
    let before = env.parties(usdc).await;
    for (what, forged) in forgeries {
        let forged = fabstir_core::receipt::SignedReceipt {
            tokens: forged.tokens,
            ..forged
        };
        let err = env
            .manager
            .submit_result(job, CID, &forged, &env.host)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidReceipt(j) if j == job),
            "{what}: {err}"
        );
    }
    // The client's real receipt, with its count raised by the host, is refused too.
    let mut raised = env.receipt(job, 30);
    raised.tokens = 100;
    fails!(
        env.manager.submit_result(job, CID, &raised, &env.host),
        Error::InvalidReceipt(_)
    );
    let after = env.parties(usdc).await;
    assert_eq!(after.of(env.host.address()), before.of(env.host.address()));
    assert_eq!(
        env.manager.job(job).await.expect("job").status,
        JobStatus::Claimed
    );
    // The client received 30 tokens and signed for 30: exactly that is paid.
    let settled = env.submit(job, CID, 30, &env.host).await;
    assert_eq!(
        settled.paid.base_units() + settled.fee.base_units(),
        U256::from(300u64)
    );
    assert_eq!(
        settled.refund.base_units(),
        amount.base_units() - U256::from(300u64)
    );
    env.finish().await;
}

/// What a call the contract refuses (run as `eth_call`, no transaction) reverts with.
async fn refused<D: ethers::abi::Detokenize + std::fmt::Debug>(
    call: ethers::contract::ContractCall<fabstir_contracts::WalletSigner, D>,
) -> Error {
    Error::from_contract(call.call().await.expect_err("refused"))
}

/// The marketplace stores only a hash of a job's terms and takes them back with every call.
/// A client cancels with terms that name a larger escrow, a host settles with terms that name
/// a higher price, a stranger expires with terms that name itself the client: each changed
/// term is refused (`TermsMismatch`) and no base unit moves.
#[tokio::test]
async fn altered_terms_are_refused() {
    use fabstir_contracts::bindings::job_marketplace::Receipt;
    use fabstir_contracts::eth::Bytes;

    let env = Env::with_host().await;
    let eth = Address::zero();
    let market = env.deployment.contracts.job_marketplace;
    let (posted, value) = env.post_open_eth_job(100, 1_000).await;
    let terms = env.manager.job_terms(posted.job).await.expect("terms");
    let before = env.parties(eth).await;
    let id = posted.job.to_u256();

    let mut larger = terms.clone();
    larger.max_tokens = 1_000;
    let as_client = JobMarketplace::new(market, env.client.clone());
    assert!(matches!(
        refused(as_client.cancel_job(id, larger)).await,
        Error::TermsMismatch(job) if job == posted.job
    ));
    let mut mine = terms.clone();
    mine.client = env.other.address();
    let as_other = JobMarketplace::new(market, env.other.clone());
    assert!(matches!(
        refused(as_other.cancel_job(id, mine)).await,
        Error::TermsMismatch(_)
    ));

    // Claimed: the stored hash now names the host; a higher price is refused.
    let claim = env.claim(posted.job, &env.host).await;
    let claimed = env.manager.job_terms(posted.job).await.expect("terms");
    assert_eq!(claimed.host, env.host.address());
    let mut dearer = claimed.clone();
    dearer.price_per_token *= 2;
    let receipt = env.receipt(posted.job, 100);
    let as_host = JobMarketplace::new(market, env.host.clone());
    let submit = as_host.submit_result(
        id,
        dearer,
        Bytes::from(CID.to_vec()),
        Receipt {
            tokens: receipt.tokens,
            transcript: receipt.transcript.0,
        },
        Bytes::from(receipt.signature.clone()),
    );
    assert!(matches!(refused(submit).await, Error::TermsMismatch(_)));
    // The unclaimed terms (host zero) are stale now too.
    assert!(matches!(
        refused(as_client.request_close(id, terms)).await,
        Error::TermsMismatch(_)
    ));
    let after = env.parties(eth).await;
    assert_eq!(
        after.of(env.client.address()),
        before.of(env.client.address())
    );
    assert_eq!(
        after.of(env.host.address()),
        before.of(env.host.address()) - claim.fee_wei()
    );
    assert_eq!(env.manager.escrow_balance(eth).await.expect("read"), value);
    // The true terms still work.
    let settled = env.submit(posted.job, CID, 100, &env.host).await;
    assert_eq!(settled.refund, TokenAmount::ZERO);
    env.finish().await;
}
