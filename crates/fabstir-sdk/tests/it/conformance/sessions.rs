//! The session half of the [`ChainLayer`] suite: deposits, the host's monotonic settlements
//! with the client's cumulative receipts, top-ups, the client's challenge close and expiry,
//! money to the base unit.

use fabstir_contracts::Error as Revert;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::{
    JobId, JobPayment, SessionDetails, SessionId, SessionSplit, SessionStatus, TokenAmount,
};

use super::chain::{ChainFixture, receipt};

const PRICE: u64 = 10;

/// The contract error under an SDK error, whichever layer passed it up.
fn revert(err: &fabstir_sdk::Error) -> Option<&Revert> {
    match err {
        fabstir_sdk::Error::Contracts(e)
        | fabstir_sdk::Error::Payments(fabstir_payments::Error::Contract(e)) => Some(e),
        _ => None,
    }
}

async fn balance(f: &dyn ChainFixture, key: &SigningKey) -> TokenAmount {
    f.chain()
        .balance(address_of(key), &f.token())
        .await
        .unwrap()
}

async fn host_credit(f: &dyn ChainFixture) -> TokenAmount {
    f.chain().credit(f.host(), &f.token()).await.unwrap()
}

/// The client opens a session with the fixture's host depositing `deposit` base units.
async fn open(f: &dyn ChainFixture, deposit: u64) -> SessionId {
    let details = SessionDetails {
        model: f.model(),
        host: f.host(),
        price_per_token: TokenAmount::from_base_units(PRICE),
        expiry: f.chain().now().await.unwrap() + 600,
    };
    let payment = JobPayment {
        token: f.token(),
        amount: TokenAmount::from_base_units(deposit),
    };
    f.chain()
        .open_session(&details, &payment, f.client())
        .await
        .unwrap()
}

fn split(f: &dyn ChainFixture, tokens: u64) -> SessionSplit {
    let fee_bps = u16::try_from(f.fee_bps()).unwrap();
    SessionSplit::of(tokens, TokenAmount::from_base_units(PRICE), fee_bps)
}

fn units(amount: u64) -> TokenAmount {
    TokenAmount::from_base_units(amount)
}

/// The host settles 100 tokens, is refused a repeat, a forgery and a receipt beyond the
/// deposit, then the client tops up and the host closes with 600: the host is paid the split
/// of 600 in all, the client is charged exactly 600 x price.
pub(crate) async fn sessions_pay_the_increase_and_close_exactly(f: &dyn ChainFixture) {
    let client_before = balance(f, f.client()).await;
    let credit_before = host_credit(f).await;
    let session = open(f, 5_000).await;
    let opened = f.chain().session(session).await.unwrap();
    assert_eq!(
        (opened.status, opened.deposit, opened.settled_tokens),
        (SessionStatus::Open, units(5_000), 0)
    );
    assert_eq!(opened.client, address_of(f.client()));
    assert_eq!(
        balance(f, f.client()).await,
        client_before.checked_sub(units(5_000)).unwrap()
    );

    f.settle_session(session, &receipt(f, f.client(), session, 100))
        .await
        .unwrap();
    assert_eq!(
        host_credit(f).await,
        credit_before.checked_add(split(f, 100).paid).unwrap()
    );
    let again = f
        .settle_session(session, &receipt(f, f.client(), session, 100))
        .await
        .unwrap_err();
    assert!(
        matches!(revert(&again), Some(Revert::StaleReceipt { .. })),
        "{again}"
    );
    let forged = f
        .settle_session(session, &receipt(f, f.stranger(), session, 200))
        .await
        .unwrap_err();
    assert!(
        matches!(revert(&forged), Some(Revert::InvalidReceipt(id)) if *id == session),
        "{forged}"
    );
    let beyond = receipt(f, f.client(), session, 600);
    let err = f.settle_session(session, &beyond).await.unwrap_err();
    assert!(
        matches!(revert(&err), Some(Revert::ReceiptExceedsDeposit { .. })),
        "{err}"
    );

    f.chain()
        .top_up_session(session, units(2_000), f.client())
        .await
        .unwrap();
    assert_eq!(
        f.chain().session(session).await.unwrap().deposit,
        units(7_000)
    );
    f.close_session(session, Some(&beyond)).await.unwrap();
    let closed = f.chain().session(session).await.unwrap();
    assert_eq!(
        (closed.status, closed.settled_tokens, closed.deposit),
        (SessionStatus::Closed, 600, units(7_000))
    );
    assert_eq!(
        host_credit(f).await,
        credit_before.checked_add(split(f, 600).paid).unwrap()
    );
    assert_eq!(
        balance(f, f.client()).await,
        client_before.checked_sub(units(600 * PRICE)).unwrap()
    );
}

/// The host settles 50 tokens and goes silent: a stranger cannot ask to close, the client
/// can; nobody can expire before the window ends; then the client gets back all but the 50
/// settled, and the host can do nothing more.
pub(crate) async fn a_silent_hosts_session_closes_after_the_window(f: &dyn ChainFixture) {
    let rules = f.chain().rules().await.unwrap();
    let client_before = balance(f, f.client()).await;
    let session = open(f, 3_000).await;
    f.settle_session(session, &receipt(f, f.client(), session, 50))
        .await
        .unwrap();
    let err = f
        .chain()
        .request_session_close(session, f.stranger())
        .await
        .unwrap_err();
    assert!(
        matches!(revert(&err), Some(Revert::NotClient { .. })),
        "{err}"
    );
    f.chain()
        .request_session_close(session, f.client())
        .await
        .unwrap();
    let closing = f.chain().session(session).await.unwrap();
    assert_eq!(closing.status, SessionStatus::Closing);
    let now = f.chain().now().await.unwrap();
    let close_by = closing.close_by.expect("a closing session has a window");
    assert!(
        close_by > now - 1 && close_by <= now + rules.close_window,
        "{close_by} {now}"
    );
    let err = f
        .chain()
        .expire_session(session, f.stranger())
        .await
        .unwrap_err();
    assert!(
        matches!(revert(&err), Some(Revert::DeadlineNotReached { .. })),
        "{err}"
    );
    f.pass_time(rules.close_window + 1).await;
    f.chain()
        .expire_session(session, f.stranger())
        .await
        .unwrap();
    let expired = f.chain().session(session).await.unwrap();
    assert_eq!(
        (expired.status, expired.settled_tokens),
        (SessionStatus::Expired, 50)
    );
    assert_eq!(
        balance(f, f.client()).await,
        client_before.checked_sub(units(50 * PRICE)).unwrap()
    );
    let late = f
        .close_session(session, Some(&receipt(f, f.client(), session, 60)))
        .await
        .unwrap_err();
    assert!(
        matches!(revert(&late), Some(Revert::SessionNotOpen { .. })),
        "{late}"
    );
}

/// A session the stranger cannot pay for is refused before anything moves; ids that are not
/// sessions (unknown, or a job's) are not found.
pub(crate) async fn sessions_need_funds_and_unknown_ones_are_not_found(f: &dyn ChainFixture) {
    let details = SessionDetails {
        model: f.model(),
        host: f.host(),
        price_per_token: units(PRICE),
        expiry: f.chain().now().await.unwrap() + 600,
    };
    let payment = JobPayment {
        token: f.token(),
        amount: units(1_000),
    };
    let err = f
        .chain()
        .open_session(&details, &payment, f.stranger())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            fabstir_sdk::Error::Payments(fabstir_payments::Error::InsufficientBalance { .. })
        ),
        "{err}"
    );
    let err = f.chain().session(JobId(u64::MAX)).await.unwrap_err();
    assert!(
        matches!(revert(&err), Some(Revert::SessionNotFound(_))),
        "{err}"
    );
    let (job, _, _) = super::chain::post(f, 600).await;
    let err = f.chain().session(job).await.unwrap_err();
    assert!(
        matches!(revert(&err), Some(Revert::SessionNotFound(id)) if *id == job),
        "{err}"
    );
}

/// A client's sessions are listed, open and finished, and nobody else's.
pub(crate) async fn a_clients_sessions_are_listed(f: &dyn ChainFixture) {
    let client = address_of(f.client());
    let before = f.chain().sessions_of(client).await.unwrap();
    let first = open(f, 500).await;
    let second = open(f, 700).await;
    let listed = f.chain().sessions_of(client).await.unwrap();
    assert_eq!(listed.len(), before.len() + 2);
    let tail: Vec<_> = listed[before.len()..]
        .iter()
        .map(|s| (s.id, s.deposit, s.status))
        .collect();
    assert_eq!(
        tail,
        vec![
            (first, units(500), SessionStatus::Open),
            (second, units(700), SessionStatus::Open)
        ]
    );
    assert!(listed.iter().all(|s| s.client == client));
    let strangers = f
        .chain()
        .sessions_of(address_of(f.stranger()))
        .await
        .unwrap();
    assert!(strangers.is_empty(), "{strangers:?}");
}

/// Every session check, in order.
pub(crate) async fn run_all(f: &dyn ChainFixture) {
    sessions_pay_the_increase_and_close_exactly(f).await;
    a_silent_hosts_session_closes_after_the_window(f).await;
    sessions_need_funds_and_unknown_ones_are_not_found(f).await;
    a_clients_sessions_are_listed(f).await;
}
