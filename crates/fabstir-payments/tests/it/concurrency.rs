//! Many submissions from one signer at once: no nonce collisions, one approval.

use std::collections::BTreeSet;

use fabstir_payments::{JobPayment, PaymentMethod};

use crate::common::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_submissions_share_one_approval() {
    let env = Env::new().await;
    let payments = env.payments(env.cap("USDC", "1000"), false);
    let usdc = env.token("USDC");
    let details = env.details(10_000).await;
    let payment = JobPayment::for_job(usdc, &details).unwrap();
    let before = env.nonce(&env.client).await;

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let payments = payments.clone();
            let details = details.clone();
            let payment = payment.clone();
            let signer = env.client.clone();
            tokio::spawn(async move {
                payments
                    .submit_job(&details, &Env::open(), &payment, &signer)
                    .await
            })
        })
        .collect();
    let mut jobs = BTreeSet::new();
    let mut approvals = 0;
    for task in tasks {
        let submission = task.await.unwrap().unwrap();
        if submission.method == (PaymentMethod::Token { approval: true }) {
            approvals += 1;
        }
        jobs.insert(submission.posted.job);
    }
    assert_eq!(jobs.len(), 20, "twenty distinct jobs");
    assert_eq!(approvals, 1, "exactly one approval");
    assert_eq!(env.nonce(&env.client).await, before + 21);
    env.assert_conserved().await;
}

#[tokio::test]
async fn a_second_sender_on_the_same_address_does_not_break_the_nonce_counter() {
    let env = Env::new().await;
    let payments = env.payments(env.cap("USDC", "1000"), false);
    let other = env.payments(env.cap("USDC", "1000"), false);
    let usdc = env.token("USDC");
    let details = env.details(10_000).await;
    let payment = JobPayment::for_job(usdc, &details).unwrap();
    for manager in [&payments, &other, &payments, &other] {
        manager
            .submit_job(&details, &Env::open(), &payment, &env.client)
            .await
            .expect("each manager resynchronises a stale nonce");
    }
    env.assert_conserved().await;
}
