//! Sessions against the real contracts on anvil: many prompts on one deposit, settled with the
//! client's cumulative receipts. Each cheat is written as the attack (the attacker's
//! transaction) with the money outcome to the base unit; `docs/THREAT_MODEL.md` maps each to
//! its defence.

use ethers::types::{Address, U256};
use fabstir_contracts::{Error, LOCAL_RULES};
use fabstir_core::{JobId, SessionSplit, SessionStatus, TokenAmount};

use crate::common::{Env, OTHER_MODEL, fails};

/// USDC price per token in these tests (the host asks 10, see `Env::register`).
const PRICE: u64 = 10;

/// The split of `tokens` at [`PRICE`] under the deployment's fee.
async fn split(env: &Env, tokens: u64) -> SessionSplit {
    let fee_bps = env.manager.fee_bps().await.expect("fee");
    SessionSplit::of(tokens, TokenAmount::from_base_units(PRICE), fee_bps)
}

/// Twenty prompts on one deposit, the host settling part of it three times on the way and
/// closing with the newest receipt: the host is paid Σ receipted tokens x price less the fee,
/// the treasury the fee, the client the rest, to the base unit, whatever the partial steps.
#[tokio::test]
async fn twenty_prompts_settle_exactly_with_partial_settlements() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let before = env.parties(usdc).await;
    let deposit = 10_000u64;
    let opened = env.open_usdc_session(deposit, PRICE).await;
    let session = opened.session;
    let mut tokens = 0u64;
    let mut paid_on_the_way = U256::zero();
    for prompt in 1..=20u64 {
        tokens += 30 + prompt; // a prompt's answer, received and receipted
        if prompt % 5 == 0 && prompt < 20 {
            let partial = env
                .manager
                .settle_session(session, &env.receipt(session, tokens), &env.host)
                .await
                .expect("settles part");
            assert_eq!(partial.tokens, tokens);
            paid_on_the_way += partial.paid.base_units();
        }
    }
    assert_eq!(tokens, 810);
    let on_chain = env.manager.session(session).await.expect("reads");
    assert_eq!(on_chain.status, SessionStatus::Open);
    assert_eq!(on_chain.settled_tokens, 30 * 15 + (1..=15).sum::<u64>());
    let closed = env
        .manager
        .close_session(session, Some(&env.receipt(session, tokens)), &env.host)
        .await
        .expect("closes");
    let whole = split(&env, tokens).await;
    let s = closed.settlement;
    assert_eq!((s.tokens, s.paid, s.fee), (tokens, whole.paid, whole.fee));
    assert_eq!(
        s.refund,
        TokenAmount::from_base_units(deposit - tokens * PRICE)
    );
    assert!(paid_on_the_way < whole.paid.base_units());

    let after = env.parties(usdc).await;
    let client = env.client.address();
    assert_eq!(
        before.of(client) - after.of(client),
        U256::from(tokens * PRICE)
    );
    assert_eq!(
        after.of(env.host.address()) - before.of(env.host.address()),
        whole.paid.base_units()
    );
    assert_eq!(
        env.manager.accrued_fees(usdc).await.expect("fees"),
        whole.fee
    );
    let ended = env.manager.session(session).await.expect("reads");
    assert_eq!(
        (ended.status, ended.settled_tokens),
        (SessionStatus::Closed, tokens)
    );
    assert_eq!(ended.deposit, TokenAmount::from_base_units(deposit));
    env.finish().await;
}

/// The host settles with the same receipt twice, then with an older one, then closes with an
/// older one: a receipt pays once, settlement only goes up.
#[tokio::test]
async fn a_receipt_is_paid_once_and_settlement_never_goes_back() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let session = env.open_usdc_session(5_000, PRICE).await.session;
    let (old, new) = (env.receipt(session, 100), env.receipt(session, 250));
    env.manager
        .settle_session(session, &new, &env.host)
        .await
        .expect("settles");
    let credit = env
        .manager
        .escrow_credit(usdc, env.host.address())
        .await
        .expect("credit");
    fails!(
        env.manager.settle_session(session, &new, &env.host),
        Error::StaleReceipt {
            tokens: 250,
            settled: 250,
            ..
        }
    );
    fails!(
        env.manager.settle_session(session, &old, &env.host),
        Error::StaleReceipt {
            tokens: 100,
            settled: 250,
            ..
        }
    );
    fails!(
        env.manager.close_session(session, Some(&old), &env.host),
        Error::StaleReceipt {
            tokens: 100,
            settled: 250,
            ..
        }
    );
    assert_eq!(
        env.manager
            .escrow_credit(usdc, env.host.address())
            .await
            .expect("credit"),
        credit
    );
    assert_eq!(credit, split(&env, 250).await.paid);
    // Closing with no newer receipt pays nothing more and refunds the rest.
    let closed = env
        .manager
        .close_session(session, None, &env.host)
        .await
        .expect("closes");
    assert_eq!(closed.settlement.tokens, 250);
    assert_eq!(
        closed.settlement.refund,
        TokenAmount::from_base_units(5_000 - 2_500u64)
    );
    assert_eq!(closed.settlement.paid, split(&env, 250).await.paid);
    env.finish().await;
}

/// The host signs its own receipt, replays a receipt the client signed for another session,
/// or one for the client's one-shot job: none of them pays anything.
#[tokio::test]
async fn forged_and_foreign_receipts_pay_nothing() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let first = env.open_usdc_session(5_000, PRICE).await.session;
    let second = env.open_usdc_session(5_000, PRICE).await.session;
    let host_key = env.chain.hosts()[0].wallet.signer();
    let forged = env.receipt_by(host_key, first, 400, env.domain());
    fails!(
        env.manager.settle_session(first, &forged, &env.host),
        Error::InvalidReceipt(s) if s == first
    );
    let for_second = env.receipt(second, 400);
    fails!(
        env.manager.settle_session(first, &for_second, &env.host),
        Error::InvalidReceipt(_)
    );
    let (_, job, _) = env.post_token_job(usdc, 500, PRICE).await;
    let for_job = env.receipt(job.job, 400);
    fails!(
        env.manager.close_session(first, Some(&for_job), &env.host),
        Error::InvalidReceipt(_)
    );
    // Nor can the session's receipt settle the job.
    env.claim(job.job, &env.host).await;
    let for_first = env.receipt(first, 400);
    fails!(
        env.manager
            .submit_result(job.job, b"bafy", &for_first, &env.host),
        Error::InvalidReceipt(_)
    );
    assert_eq!(
        env.manager
            .escrow_credit(usdc, env.host.address())
            .await
            .expect("credit"),
        TokenAmount::ZERO
    );
    env.finish().await;
}

/// Strangers act on someone else's session: another account settles with the client's real
/// receipt, asks to close, tops up; the host asks to close for the client.
#[tokio::test]
async fn only_the_host_settles_and_only_the_client_tops_up_or_asks_to_close() {
    let env = Env::with_host().await;
    let session = env.open_usdc_session(5_000, PRICE).await.session;
    let receipt = env.receipt(session, 100);
    let other = env.other.address();
    fails!(
        env.manager.settle_session(session, &receipt, &env.other),
        Error::NotClaimer { caller, .. } if caller == other
    );
    fails!(
        env.manager
            .close_session(session, Some(&receipt), &env.other),
        Error::NotClaimer { .. }
    );
    fails!(
        env.manager.request_session_close(session, &env.other),
        Error::NotClient { caller, .. } if caller == other
    );
    fails!(
        env.manager.request_session_close(session, &env.host),
        Error::NotClient { .. }
    );
    let usdc = env.token("USDC");
    env.approve_spender(&env.other, usdc, U256::from(100u64))
        .await;
    fails!(
        env.manager
            .top_up_session(session, TokenAmount::from_base_units(100u64), &env.other),
        Error::NotClient { .. }
    );
    let on_chain = env.manager.session(session).await.expect("reads");
    assert_eq!(on_chain.settled_tokens, 0);
    assert_eq!(on_chain.deposit, TokenAmount::from_base_units(5_000u64));
    env.finish().await;
}

/// The client signs for more tokens than its deposit pays for: the host cannot settle it
/// (it never streams beyond the deposit); after a top-up the same receipt settles exactly.
#[tokio::test]
async fn a_receipt_beyond_the_deposit_is_refused_until_a_top_up_covers_it() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let session = env.open_usdc_session(1_000, PRICE).await.session;
    let receipt = env.receipt(session, 150);
    fails!(
        env.manager.settle_session(session, &receipt, &env.host),
        Error::ReceiptExceedsDeposit { cost, deposit, .. }
            if cost == U256::from(1_500u64) && deposit == U256::from(1_000u64)
    );
    env.approve_spender(&env.client, usdc, U256::from(1_000u64))
        .await;
    env.manager
        .top_up_session(session, TokenAmount::from_base_units(1_000u64), &env.client)
        .await
        .expect("tops up");
    let on_chain = env.manager.session(session).await.expect("reads");
    assert_eq!(on_chain.deposit, TokenAmount::from_base_units(2_000u64));
    assert_eq!(on_chain.covered_tokens(), 200);
    let closed = env
        .manager
        .close_session(session, Some(&receipt), &env.host)
        .await
        .expect("closes");
    assert_eq!(
        closed.settlement.refund,
        TokenAmount::from_base_units(500u64)
    );
    assert_eq!(closed.settlement.paid, split(&env, 150).await.paid);
    env.finish().await;
}

/// A host that disappears after settling part: the client asks to close, cannot expire the
/// session before the close window ends, then gets back exactly what was not settled. The
/// host keeps what it settled.
#[tokio::test]
async fn a_client_recovers_the_unsettled_deposit_through_the_challenge_close() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let session = env.open_usdc_session(5_000, PRICE).await.session;
    env.manager
        .settle_session(session, &env.receipt(session, 120), &env.host)
        .await
        .expect("settles");
    let before = env.balance(usdc, env.client.address()).await;
    env.manager
        .request_session_close(session, &env.client)
        .await
        .expect("asks to close");
    let closing = env.manager.session(session).await.expect("reads");
    assert_eq!(closing.status, SessionStatus::Closing);
    fails!(
        env.manager.expire_session(session, &env.other),
        Error::DeadlineNotReached { .. }
    );
    fails!(
        env.manager
            .top_up_session(session, TokenAmount::from_base_units(1u64), &env.client),
        Error::InvalidJobStatus { .. }
    );
    env.chain
        .advance_time(LOCAL_RULES.close_window + 1)
        .await
        .expect("time passes");
    // The host wakes up too late with a newer receipt.
    fails!(
        env.manager
            .close_session(session, Some(&env.receipt(session, 300)), &env.host),
        Error::DeadlinePassed { .. }
    );
    env.manager
        .expire_session(session, &env.other)
        .await
        .expect("anyone expires it");
    assert_eq!(
        env.balance(usdc, env.client.address()).await - before,
        U256::from(5_000u64 - 1_200)
    );
    assert_eq!(
        env.manager
            .escrow_credit(usdc, env.host.address())
            .await
            .expect("credit"),
        split(&env, 120).await.paid
    );
    let ended = env.manager.session(session).await.expect("reads");
    assert_eq!(ended.status, SessionStatus::Expired);
    fails!(
        env.manager.expire_session(session, &env.other),
        Error::SessionNotOpen { .. }
    );
    env.finish().await;
}

/// A client that dies mid-session cannot stop the host from being paid: the host closes with
/// the newest receipt it holds, even after the client asked to close, within the window.
#[tokio::test]
async fn the_host_closes_with_its_newest_receipt_inside_the_challenge_window() {
    let env = Env::with_host().await;
    let session = env.open_usdc_session(5_000, PRICE).await.session;
    env.manager
        .request_session_close(session, &env.client)
        .await
        .expect("asks to close");
    let closed = env
        .manager
        .close_session(session, Some(&env.receipt(session, 321)), &env.host)
        .await
        .expect("closes in the window");
    assert_eq!(closed.settlement.paid, split(&env, 321).await.paid);
    assert_eq!(
        closed.settlement.refund,
        TokenAmount::from_base_units(5_000u64 - 3_210)
    );
    env.finish().await;
}

/// A session past its expiry and grace: the host can no longer settle, anyone can expire it,
/// and a host that never served (or declines) closes with no receipt and refunds in full.
#[tokio::test]
async fn expiry_ends_a_session_and_a_host_may_decline_one() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let declined = env.open_usdc_session(3_000, PRICE).await.session;
    let before = env.balance(usdc, env.client.address()).await;
    env.manager
        .close_session(declined, None, &env.host)
        .await
        .expect("declines");
    assert_eq!(
        env.balance(usdc, env.client.address()).await - before,
        U256::from(3_000u64)
    );
    let session = env.open_usdc_session(3_000, PRICE).await.session;
    fails!(
        env.manager.expire_session(session, &env.other),
        Error::DeadlineNotReached { .. }
    );
    env.pass_an_hour().await;
    fails!(
        env.manager
            .settle_session(session, &env.receipt(session, 10), &env.host),
        Error::DeadlinePassed { .. }
    );
    let before = env.balance(usdc, env.client.address()).await;
    env.manager
        .expire_session(session, &env.other)
        .await
        .expect("expires");
    assert_eq!(
        env.balance(usdc, env.client.address()).await - before,
        U256::from(3_000u64)
    );
    env.finish().await;
}

/// Sessions the contract must refuse to open, each losing the client nothing: a host that is
/// not registered, does not serve the model or asks more; a deposit that pays for no token; an
/// expiry too soon; a token not accepted.
#[tokio::test]
async fn bad_sessions_are_refused_before_any_funds_move() {
    let env = Env::with_host().await;
    env.register(&env.host2, 2, &[OTHER_MODEL]).await;
    let usdc = env.token("USDC");
    let before = env.balance(usdc, env.client.address()).await;
    let good = env.session_details(PRICE).await;
    let deposit = TokenAmount::from_base_units(1_000u64);
    env.approve_spender(&env.client, usdc, U256::from(1_000u64))
        .await;
    let open = async |details| {
        env.manager
            .open_session_with_token(&details, usdc, deposit, &env.client)
            .await
    };
    let stranger = fabstir_core::SessionDetails {
        host: env.other.address(),
        ..good
    };
    fails!(open(stranger), Error::BelowHostPrice { host_price, .. } if host_price.is_zero());
    let wrong_model = fabstir_core::SessionDetails {
        host: env.host2.address(),
        ..good
    };
    fails!(open(wrong_model), Error::HostNotEligible { .. });
    let cheap = fabstir_core::SessionDetails {
        price_per_token: TokenAmount::from_base_units(PRICE - 1),
        ..good
    };
    fails!(open(cheap), Error::BelowHostPrice { .. });
    let soon = fabstir_core::SessionDetails {
        expiry: env.now().await + 1,
        ..good
    };
    fails!(open(soon), Error::InvalidDeadline { .. });
    let dear = fabstir_core::SessionDetails {
        price_per_token: TokenAmount::from_base_units(2_000u64),
        ..good
    };
    fails!(open(dear), Error::DepositTooSmall { .. });
    let nobody = fabstir_core::SessionDetails {
        host: Address::zero(),
        ..good
    };
    fails!(open(nobody), Error::InvalidSessionDetails);
    fails!(
        env.manager
            .open_session_with_token(&good, env.other.address(), deposit, &env.client),
        Error::TokenNotAccepted(_)
    );
    assert_eq!(env.balance(usdc, env.client.address()).await, before);
    assert!(env.manager.all_sessions().await.expect("reads").is_empty());
    env.finish().await;
}

/// A session paid in ETH and topped up in ETH; a job's id read as a session, and a session's as
/// a job, are refused.
#[tokio::test]
async fn an_eth_session_and_ids_that_are_not_sessions() {
    let env = Env::with_host().await;
    let gwei = 1_000_000_000u64;
    let details = fabstir_core::SessionDetails {
        price_per_token: TokenAmount::from_base_units(gwei),
        ..env.session_details(PRICE).await
    };
    let opened = env
        .manager
        .open_session(
            &details,
            TokenAmount::from_base_units(100 * gwei),
            &env.client,
        )
        .await
        .expect("opens");
    let session = opened.session;
    env.manager
        .top_up_session(
            session,
            TokenAmount::from_base_units(50 * gwei),
            &env.client,
        )
        .await
        .expect("tops up");
    let closed = env
        .manager
        .close_session(session, Some(&env.receipt(session, 120)), &env.host)
        .await
        .expect("closes");
    assert_eq!(
        closed.settlement.refund,
        TokenAmount::from_base_units(30 * gwei)
    );
    let fee_bps = env.manager.fee_bps().await.expect("fee");
    assert_eq!(
        closed.settlement.paid,
        SessionSplit::of(120, details.price_per_token, fee_bps).paid
    );
    let (job, _) = env.post_open_eth_job(10, gwei).await;
    fails!(env.manager.session(job.job), Error::SessionNotFound(id) if id == job.job);
    fails!(
        env.manager.session(JobId(u64::MAX)),
        Error::SessionNotFound(_)
    );
    assert!(env.manager.job(session).await.is_err());
    env.finish().await;
}

/// A session paid by permit is one transaction, leaves no allowance behind, and closes with
/// the exact refund; the same permit replayed for a second session is refused and moves
/// nothing (the token's nonce was used).
#[tokio::test]
async fn a_permit_session_is_one_transaction_and_its_permit_pays_once() {
    let env = Env::with_host().await;
    let usdc = env.token("USDC");
    let client = env.client.address();
    let details = env.session_details(PRICE).await;
    let deposit = TokenAmount::from_base_units(5_000);
    let spender = env.manager.payment_spender();
    let signature = env
        .manager
        .sign_permit(usdc, spender, deposit, details.expiry, env.client.signer())
        .await
        .expect("signs the permit");
    let nonce_before = env.chain.nonce(client).await.expect("nonce");
    let balance_before = env.balance(usdc, client).await;
    let opened = env
        .manager
        .open_session_with_permit_signature(
            &details,
            usdc,
            deposit,
            details.expiry,
            &signature,
            &env.client,
        )
        .await
        .expect("opens with the permit");
    let nonce_after = env.chain.nonce(client).await.expect("nonce");
    assert_eq!(nonce_after, nonce_before + 1, "exactly one transaction");
    assert_eq!(
        env.manager
            .allowance(usdc, client, spender)
            .await
            .expect("allowance"),
        TokenAmount::ZERO,
        "the permit's allowance was used up"
    );
    assert_eq!(
        env.balance(usdc, client).await,
        balance_before - deposit.base_units()
    );
    // The replayed permit sets no allowance, so the second open fails and takes nothing.
    assert!(
        env.manager
            .open_session_with_permit_signature(
                &details,
                usdc,
                deposit,
                details.expiry,
                &signature,
                &env.client,
            )
            .await
            .is_err()
    );
    assert_eq!(
        env.balance(usdc, client).await,
        balance_before - deposit.base_units()
    );
    let session = opened.session;
    let closed = env
        .manager
        .close_session(session, Some(&env.receipt(session, 321)), &env.host)
        .await
        .expect("closes");
    assert_eq!(
        closed.settlement.refund,
        TokenAmount::from_base_units(5_000 - 321 * PRICE)
    );
    assert_eq!(
        env.balance(usdc, client).await,
        balance_before - U256::from(321 * PRICE)
    );
    env.finish().await;
}
