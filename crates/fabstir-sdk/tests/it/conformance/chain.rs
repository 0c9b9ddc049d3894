//! The [`ChainLayer`] suite: what every chain the SDK runs on must do, money to the base unit.

use async_trait::async_trait;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::cid::{Cid, cid_of};
use fabstir_core::job::prompt_hash;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::{Receipt, ReceiptDomain, SignedReceipt};
use fabstir_core::{
    JobDetails, JobId, JobOutcome, JobPayment, JobRequirements, JobStatus, ModelId, PaymentToken,
    RefundReason, TokenAmount,
};
use fabstir_sdk::ChainLayer;

/// What the chain suite needs besides the layer: funded accounts and the host's side of the
/// marketplace (which the SDK's port does not have).
#[async_trait]
pub(crate) trait ChainFixture: Send + Sync {
    /// The layer under test.
    fn chain(&self) -> &dyn ChainLayer;
    /// A client funded with [`ChainFixture::token`] (at least 1,000,000 base units).
    fn client(&self) -> &SigningKey;
    /// An account with none of the token.
    fn stranger(&self) -> &SigningKey;
    /// The payment token the suite uses (an ERC-20).
    fn token(&self) -> PaymentToken;
    /// A registered host serving [`ChainFixture::model`].
    fn host(&self) -> Address;
    /// The host's key (to withdraw its earnings).
    fn host_key(&self) -> &SigningKey;
    /// A model the host serves.
    fn model(&self) -> ModelId;
    /// The protocol fee in basis points.
    fn fee_bps(&self) -> u64;
    /// The host claims `job`.
    async fn claim(&self, job: JobId);
    /// The host submits `cid` for `job` with the client's `receipt`.
    async fn submit(
        &self,
        job: JobId,
        cid: &Cid,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()>;
    /// Moves the chain's clock forward by `secs`.
    async fn pass_time(&self, secs: u64);
    /// The host settles part of `session` with the client's `receipt`.
    async fn settle_session(
        &self,
        session: JobId,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()>;
    /// The host closes `session` with the client's `receipt` (none: paid nothing more).
    async fn close_session(
        &self,
        session: JobId,
        receipt: Option<&SignedReceipt>,
    ) -> fabstir_sdk::Result<()>;
}

const PRICE: u64 = 10;
const MAX_TOKENS: u32 = 100;

async fn details(f: &dyn ChainFixture, deadline_in: u64) -> JobDetails {
    JobDetails {
        model: f.model(),
        prompt_hash: prompt_hash("conformance"),
        max_tokens: MAX_TOKENS,
        price_per_token: TokenAmount::from_base_units(PRICE),
        deadline: f.chain().now().await.unwrap() + deadline_in,
    }
}

async fn balance(f: &dyn ChainFixture, key: &SigningKey) -> TokenAmount {
    f.chain()
        .balance(address_of(key), &f.token())
        .await
        .unwrap()
}

/// Posts a job for the fixture's host; returns it and its escrow.
pub(crate) async fn post(
    f: &dyn ChainFixture,
    deadline_in: u64,
) -> (JobId, JobDetails, TokenAmount) {
    let details = details(f, deadline_in).await;
    let payment = JobPayment::for_job(f.token(), &details).unwrap();
    let job = f
        .chain()
        .post_job(
            &details,
            &JobRequirements {
                assigned_host: Some(f.host()),
            },
            &payment,
            f.client(),
        )
        .await
        .unwrap();
    (job, details, payment.amount)
}

/// `key`'s EIP-712 receipt for `tokens` of `job` on the chain's marketplace.
pub(crate) fn receipt(
    f: &dyn ChainFixture,
    key: &SigningKey,
    job: JobId,
    tokens: u64,
) -> SignedReceipt {
    let domain = ReceiptDomain {
        chain_id: f.chain().chain_id(),
        marketplace: f.chain().marketplace(),
    };
    let receipt = Receipt {
        job,
        tokens,
        transcript: H256::repeat_byte(7),
    };
    SignedReceipt {
        tokens,
        transcript: receipt.transcript,
        signature: receipt.sign(&domain, key).unwrap().to_vec(),
    }
}

/// Tokens resolve by symbol and by address, in any case; others are refused.
pub(crate) async fn tokens_resolve(f: &dyn ChainFixture) {
    let token = f.token();
    let by_symbol = f.chain().token(&token.symbol.to_lowercase()).unwrap();
    assert_eq!(by_symbol, token);
    let by_address = f
        .chain()
        .token(
            &format!("{:#x}", token.address())
                .to_uppercase()
                .replace("0X", "0x"),
        )
        .unwrap();
    assert_eq!(by_address, token);
    let err = f.chain().token("NOPE").unwrap_err();
    assert!(err.to_string().contains("NOPE"), "{err}");
}

/// Posting moves exactly the escrow and records the job as asked.
pub(crate) async fn posting_escrows_exactly(f: &dyn ChainFixture) {
    let before = balance(f, f.client()).await;
    let (job, details, escrow) = post(f, 600).await;
    assert_eq!(
        escrow,
        TokenAmount::from_base_units(PRICE * u64::from(MAX_TOKENS))
    );
    assert_eq!(
        balance(f, f.client()).await,
        before.checked_sub(escrow).unwrap()
    );
    let on_chain = f.chain().job(job).await.unwrap();
    assert_eq!(on_chain.id, job);
    assert_eq!(on_chain.status, JobStatus::Posted);
    assert_eq!(on_chain.client, address_of(f.client()));
    assert_eq!(on_chain.host, Some(f.host()));
    assert_eq!(on_chain.token, f.token().address());
    assert_eq!(on_chain.amount, escrow);
    assert_eq!(on_chain.details, details);
    assert_eq!(f.chain().job_outcome(job).await.unwrap(), None);
}

/// A client without funds is refused and nothing moves.
pub(crate) async fn posting_without_funds_is_refused(f: &dyn ChainFixture) {
    let details = details(f, 600).await;
    let payment = JobPayment::for_job(f.token(), &details).unwrap();
    let err = f
        .chain()
        .post_job(
            &details,
            &JobRequirements::default(),
            &payment,
            f.stranger(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("insufficient {}", f.token().symbol)),
        "{err}"
    );
    assert_eq!(balance(f, f.stranger()).await, TokenAmount::ZERO);
}

/// Only the client cancels, only before a claim, and gets all of it back.
pub(crate) async fn cancelling_refunds_in_full(f: &dyn ChainFixture) {
    let before = balance(f, f.client()).await;
    let (job, _, escrow) = post(f, 600).await;
    let err = f.chain().cancel_job(job, f.stranger()).await.unwrap_err();
    assert!(err.to_string().contains("not"), "{err}");
    f.chain().cancel_job(job, f.client()).await.unwrap();
    assert_eq!(balance(f, f.client()).await, before);
    assert_eq!(
        f.chain().job(job).await.unwrap().status,
        JobStatus::Cancelled
    );
    assert_eq!(
        f.chain().job_outcome(job).await.unwrap(),
        Some(JobOutcome::Refunded {
            reason: RefundReason::Cancelled,
            amount: escrow,
        })
    );
    assert!(f.chain().cancel_job(job, f.client()).await.is_err());
    assert_eq!(balance(f, f.client()).await, before, "no second refund");
}

/// A claimed job cannot be cancelled; its settlement pays tokens x price, less the fee, and
/// refunds the rest, to the base unit. The host's payment is credited to it, and it
/// withdraws it to its own balance.
pub(crate) async fn settlement_splits_exactly(f: &dyn ChainFixture) {
    let before = balance(f, f.client()).await;
    let token = f.token();
    let earned_before = f.chain().credit(f.host(), &token).await.unwrap();
    let (job, _, escrow) = post(f, 600).await;
    f.claim(job).await;
    assert_eq!(f.chain().job(job).await.unwrap().status, JobStatus::Claimed);
    assert!(f.chain().cancel_job(job, f.client()).await.is_err());
    let tokens = 37;
    // A receipt signed by anyone but the client is refused, and changes nothing.
    let forged = receipt(f, f.stranger(), job, tokens);
    let cid = cid_of(b"conformance");
    let err = f.submit(job, &cid, &forged).await.unwrap_err();
    assert!(
        err.to_string().contains("not signed by the job's client"),
        "{err}"
    );
    f.submit(job, &cid, &receipt(f, f.client(), job, tokens))
        .await
        .unwrap();
    let cost = PRICE * tokens;
    let fee = cost * f.fee_bps() / 10_000;
    let Some(JobOutcome::Settled(settled)) = f.chain().job_outcome(job).await.unwrap() else {
        panic!("job {job} is not settled");
    };
    assert_eq!(settled.host, f.host());
    assert_eq!(settled.result_cid, Some(cid));
    assert_eq!(settled.tokens_used, tokens);
    assert_eq!(settled.fee, TokenAmount::from_base_units(fee));
    assert_eq!(settled.paid, TokenAmount::from_base_units(cost - fee));
    assert_eq!(
        settled.refund,
        escrow
            .checked_sub(TokenAmount::from_base_units(cost))
            .unwrap()
    );
    assert_eq!(
        balance(f, f.client()).await,
        before
            .checked_sub(TokenAmount::from_base_units(cost))
            .unwrap()
    );
    assert_eq!(
        f.chain().job(job).await.unwrap().status,
        JobStatus::Completed
    );
    let earned = f.chain().credit(f.host(), &token).await.unwrap();
    assert_eq!(earned, earned_before.checked_add(settled.paid).unwrap());
    let host_balance = f.chain().balance(f.host(), &token).await.unwrap();
    let withdrawn = f
        .chain()
        .withdraw_credit(&token, f.host_key())
        .await
        .unwrap();
    assert_eq!(withdrawn, earned);
    assert_eq!(
        f.chain().balance(f.host(), &token).await.unwrap(),
        host_balance.checked_add(earned).unwrap()
    );
    assert_eq!(
        f.chain().credit(f.host(), &token).await.unwrap(),
        TokenAmount::ZERO
    );
    assert_eq!(
        f.chain()
            .withdraw_credit(&token, f.host_key())
            .await
            .unwrap(),
        TokenAmount::ZERO,
        "nothing more is owed"
    );
}

/// A claimed job expires only after its deadline and the grace period, back to its client.
pub(crate) async fn expiry_waits_for_the_deadline_and_the_grace_period(f: &dyn ChainFixture) {
    let rules = f.chain().rules().await.unwrap();
    assert_eq!(rules, fabstir_contracts::LOCAL_RULES);
    let before = balance(f, f.client()).await;
    let (job, _, escrow) = post(f, 40).await;
    f.claim(job).await;
    let err = f.chain().expire_job(job, f.stranger()).await.unwrap_err();
    assert!(err.to_string().contains("deadline"), "{err}");
    f.pass_time(41).await;
    assert!(f.chain().now().await.unwrap() > f.chain().job(job).await.unwrap().details.deadline);
    let err = f.chain().expire_job(job, f.stranger()).await.unwrap_err();
    assert!(
        err.to_string().contains("deadline"),
        "in the grace period: {err}"
    );
    f.pass_time(rules.submit_grace).await;
    f.chain().expire_job(job, f.stranger()).await.unwrap();
    assert_eq!(balance(f, f.client()).await, before);
    assert_eq!(f.chain().job(job).await.unwrap().status, JobStatus::Expired);
    assert_eq!(
        f.chain().job_outcome(job).await.unwrap(),
        Some(JobOutcome::Refunded {
            reason: RefundReason::Expired,
            amount: escrow,
        })
    );
}

/// The client of a claimed job asks to close; after the close window anyone may expire it,
/// and the client gets the escrow back in full. Nobody else may ask.
pub(crate) async fn a_claimed_job_closes_after_the_window(f: &dyn ChainFixture) {
    let rules = f.chain().rules().await.unwrap();
    let before = balance(f, f.client()).await;
    let (job, _, _) = post(f, 600).await;
    f.claim(job).await;
    let err = f
        .chain()
        .request_close(job, f.stranger())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("belongs to client"), "{err}");
    f.chain().request_close(job, f.client()).await.unwrap();
    assert_eq!(f.chain().job(job).await.unwrap().status, JobStatus::Closing);
    let err = f.chain().expire_job(job, f.stranger()).await.unwrap_err();
    assert!(err.to_string().contains("deadline"), "{err}");
    f.pass_time(rules.close_window + 1).await;
    f.chain().expire_job(job, f.stranger()).await.unwrap();
    assert_eq!(balance(f, f.client()).await, before);
    assert_eq!(f.chain().job(job).await.unwrap().status, JobStatus::Expired);
}

/// A post must escrow exactly `max_tokens x price`, at a price above zero.
pub(crate) async fn posts_must_be_fully_funded(f: &dyn ChainFixture) {
    let before = balance(f, f.client()).await;
    let details = details(f, 600).await;
    let exact = JobPayment::for_job(f.token(), &details).unwrap();
    let short = JobPayment {
        amount: exact
            .amount
            .checked_sub(TokenAmount::from_base_units(1u64))
            .unwrap(),
        ..exact.clone()
    };
    let open = JobRequirements::default();
    let err = f
        .chain()
        .post_job(&details, &open, &short, f.client())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exactly"), "{err}");
    let free = JobDetails {
        price_per_token: TokenAmount::ZERO,
        ..details.clone()
    };
    let nothing = JobPayment {
        amount: TokenAmount::ZERO,
        ..exact
    };
    let err = f
        .chain()
        .post_job(&free, &open, &nothing, f.client())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("above zero"), "{err}");
    assert_eq!(balance(f, f.client()).await, before);
}

/// An unknown job is "not found"; it has no outcome.
pub(crate) async fn unknown_jobs_are_not_found(f: &dyn ChainFixture) {
    let id = JobId(987_654);
    let err = f.chain().job(id).await.unwrap_err();
    assert_eq!(err.to_string(), format!("job {id} not found"));
    assert_eq!(f.chain().job_outcome(id).await.unwrap(), None);
}

/// Runs every check of the suite, in order, on one fixture.
pub(crate) async fn run_all(f: &dyn ChainFixture) {
    tokens_resolve(f).await;
    posting_escrows_exactly(f).await;
    posting_without_funds_is_refused(f).await;
    cancelling_refunds_in_full(f).await;
    settlement_splits_exactly(f).await;
    expiry_waits_for_the_deadline_and_the_grace_period(f).await;
    a_claimed_job_closes_after_the_window(f).await;
    posts_must_be_fully_funded(f).await;
    unknown_jobs_are_not_found(f).await;
    super::sessions::run_all(f).await;
}
