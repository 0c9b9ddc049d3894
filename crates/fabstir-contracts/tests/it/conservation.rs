//! Fund conservation as a property: random sequences of posts, claims, receipt settlements,
//! cancellations, close requests, expiries, time passing and fee withdrawals, in ETH, a
//! USDC-like and a USDT-like token, on one anvil chain. After every step, each token's escrow
//! holds exactly the open jobs (as a model of the marketplace tracks them), plus credited
//! refunds, plus fees accrued for the treasury; a settlement splits its escrow to the base
//! unit; the job's status on chain is the model's.

use std::collections::BTreeMap;

use ethers::types::{Address, U256};
use fabstir_contracts::JobStatus;
use fabstir_core::{JobId, TokenAmount};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::common::{CID, Env};

/// Sequences run.
const CASES: u32 = 200;

#[derive(Debug, Clone)]
enum Op {
    /// Post a job in token `token` (0 ETH, 1 USDC, 2 USDT) of `max_tokens` at `price`.
    Post {
        token: usize,
        max_tokens: u32,
        price: u64,
        life: u64,
    },
    /// The host claims the `pick`-th job of the model (modulo their number).
    Claim { pick: usize },
    /// The host settles with a receipt for `tokens` (modulo the job's maximum + 1).
    Settle { pick: usize, tokens: u64 },
    /// The client cancels.
    Cancel { pick: usize },
    /// The client asks to close.
    Close { pick: usize },
    /// Anyone expires.
    Expire { pick: usize },
    /// Time passes.
    Wait { secs: u64 },
    /// The treasury withdraws a token's fees.
    WithdrawFees { token: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 1..40u32, 1..50u64, 30..90u64)
            .prop_map(|(token, max_tokens, price, life)| Op::Post { token, max_tokens, price, life }),
        2 => any::<usize>().prop_map(|pick| Op::Claim { pick }),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(pick, tokens)| Op::Settle { pick, tokens }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Expire { pick }),
        1 => (1..40u64).prop_map(|secs| Op::Wait { secs }),
        1 => (0..3usize).prop_map(|token| Op::WithdrawFees { token }),
    ]
}

/// What the model knows of a job.
#[derive(Debug, Clone)]
struct Modeled {
    token: Address,
    amount: U256,
    max_tokens: u32,
    price: u64,
    status: JobStatus,
}

struct Model {
    jobs: BTreeMap<JobId, Modeled>,
    tokens: [Address; 3],
}

impl Model {
    fn pick(&self, pick: usize) -> Option<JobId> {
        if self.jobs.is_empty() {
            return None;
        }
        self.jobs.keys().nth(pick % self.jobs.len()).copied()
    }

    fn set(&mut self, job: JobId, status: JobStatus) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.status = status;
        }
    }

    fn open(&self, token: Address) -> U256 {
        self.jobs
            .values()
            .filter(|j| j.token == token && j.status.is_open())
            .fold(U256::zero(), |sum, j| sum + j.amount)
    }
}

async fn step(env: &Env, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let m = &env.manager;
    match *op {
        Op::Post {
            token,
            max_tokens,
            price,
            life,
        } => {
            let token = model.tokens[token];
            let price = if token.is_zero() {
                price * 1_000_000_000
            } else {
                price
            };
            let mut details = env.details(max_tokens, price).await;
            details.deadline = env.now().await + life;
            let amount = details.escrow_amount().expect("no overflow");
            let posted = if token.is_zero() {
                m.post_job(&details, &Env::open(), amount, &env.client)
                    .await
            } else {
                env.approve_spender(&env.client, token, amount.base_units())
                    .await;
                let posted = m
                    .post_job_with_token(&details, &Env::open(), token, amount, &env.client)
                    .await;
                if posted.is_err() {
                    // A refused post leaves the allowance; USDT approves only from zero.
                    env.approve_spender(&env.client, token, U256::zero()).await;
                }
                posted
            };
            if let Ok(posted) = posted {
                model.jobs.insert(
                    posted.job,
                    Modeled {
                        token,
                        amount: amount.base_units(),
                        max_tokens,
                        price,
                        status: JobStatus::Posted,
                    },
                );
            }
        }
        Op::Claim { pick } => {
            let Some(job) = model.pick(pick) else {
                return Ok(());
            };
            if m.claim_job(job, &env.host).await.is_ok() {
                prop_assert_eq!(model.jobs[&job].status, JobStatus::Posted);
                model.set(job, JobStatus::Claimed);
            }
        }
        Op::Settle { pick, tokens } => {
            let Some(job) = model.pick(pick) else {
                return Ok(());
            };
            let j = model.jobs[&job].clone();
            let tokens = tokens % (u64::from(j.max_tokens) + 1);
            let receipt = env.receipt(job, tokens);
            if let Ok(settled) = m.submit_result(job, CID, &receipt, &env.host).await {
                prop_assert!(j.status.is_claimed(), "settled a {} job", j.status);
                let cost = U256::from(tokens) * U256::from(j.price);
                let fee = cost / 100;
                prop_assert_eq!(settled.fee.base_units(), fee);
                prop_assert_eq!(settled.paid.base_units(), cost - fee);
                prop_assert_eq!(settled.refund.base_units(), j.amount - cost);
                model.set(job, JobStatus::Completed);
            }
        }
        Op::Cancel { pick } => {
            let Some(job) = model.pick(pick) else {
                return Ok(());
            };
            if m.cancel_job(job, &env.client).await.is_ok() {
                prop_assert_eq!(model.jobs[&job].status, JobStatus::Posted);
                model.set(job, JobStatus::Cancelled);
            }
        }
        Op::Close { pick } => {
            let Some(job) = model.pick(pick) else {
                return Ok(());
            };
            if m.request_close(job, &env.client).await.is_ok() {
                prop_assert_eq!(model.jobs[&job].status, JobStatus::Claimed);
                model.set(job, JobStatus::Closing);
            }
        }
        Op::Expire { pick } => {
            let Some(job) = model.pick(pick) else {
                return Ok(());
            };
            if m.expire_job(job, &env.other).await.is_ok() {
                prop_assert!(model.jobs[&job].status.is_open());
                model.set(job, JobStatus::Expired);
            }
        }
        Op::Wait { secs } => env.chain.advance_time(secs).await.expect("time passes"),
        Op::WithdrawFees { token } => {
            let token = model.tokens[token];
            let before = m.accrued_fees(token).await.expect("read");
            let to = env.other.address();
            let held = env.balance(token, to).await;
            // The treasury is the deployer's treasury account.
            let treasury = &env.chain.treasury().signer;
            m.withdraw_fees(token, to, treasury)
                .await
                .expect("the treasury withdraws");
            if !token.is_zero() {
                prop_assert_eq!(env.balance(token, to).await, held + before.base_units());
            }
            prop_assert_eq!(
                m.accrued_fees(token).await.expect("read"),
                TokenAmount::ZERO
            );
        }
    }
    check(env, model).await
}

/// The invariant: per token, escrow = open jobs + credits + accrued fees; statuses agree.
async fn check(env: &Env, model: &Model) -> Result<(), TestCaseError> {
    let m = &env.manager;
    for token in model.tokens {
        let held = m.escrow_balance(token).await.expect("read").base_units();
        let credit = m.total_credit(token).await.expect("read").base_units();
        let fees = m.accrued_fees(token).await.expect("read").base_units();
        prop_assert_eq!(
            held,
            model.open(token) + credit + fees,
            "token {:#x}",
            token
        );
    }
    if let Some((&job, j)) = model.jobs.iter().next_back() {
        let (status, _) = env.manager.job_status(job).await.expect("read");
        prop_assert_eq!(status, j.status);
    }
    Ok(())
}

#[test]
fn funds_are_conserved_by_any_sequence() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let env = rt.block_on(Env::with_host());
    let tokens = [Address::zero(), env.token("USDC"), env.token("USDT")];
    // The chain keeps its state from one sequence to the next, so the model does too.
    let model = std::cell::RefCell::new(Model {
        jobs: BTreeMap::new(),
        tokens,
    });
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..8), |ops| {
        let mut model = model.borrow_mut();
        rt.block_on(async {
            for op in &ops {
                step(&env, &mut model, op).await?;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    rt.block_on(env.finish());
}
