//! The gas measurement itself, shared by the test `gas::gas_per_operation` (which asserts
//! the target) and the benchmark `benches/gas.rs` (which writes `bench/results.json`). Gas
//! is deterministic, so both see the same figures.

use std::sync::Arc;

use ethers::types::U256;
use fabstir_contracts::{OpenedSession, PostedJob, TxInfo, WalletSigner};
use fabstir_core::TokenAmount;

use crate::common::{Env, MODEL};

/// A CIDv1 (raw, sha2-256) in its text form, as a host would submit it.
const CID: &[u8] = b"bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

/// Tokens the host reports out of the 1,000 escrowed, so that a refund is paid too.
const TOKENS_USED: u64 = 700;

/// The target for post + claim + submit of an ERC-20 job with the approval already given,
/// the receipt's signature checked on chain (the receipts issue's figure). Met by the storage
/// layout: one slot per open job holding a hash of its terms (deleted when the job ends), the
/// escrow inside the marketplace, earnings credited and fees accrued in one slot per token.
pub(crate) const ERC20_JOB_TARGET: u64 = 200_000;

/// The target for the same job paid in ETH.
pub(crate) const ETH_JOB_TARGET: u64 = 180_000;

/// The target for opening an ERC-20 session (approval given) and closing it with the
/// client's receipt (sessions issue; microraiden's ERC-20 channel measures 191k for the same
/// pair). Met because a session is one slot holding a hash of its terms, like a job, and a
/// second slot only written once the deposit is topped up or a part is settled.
pub(crate) const ERC20_SESSION_TARGET: u64 = 160_000;

/// Tokens receipted in the middle of the measured session with a partial settlement.
const TOKENS_PARTIAL: u64 = 300;

/// How a job's escrow is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payment {
    /// ETH sent with `postJob`.
    Eth,
    /// USDC through `postJobWithToken`, the client's approval already given.
    UsdcApproved,
    /// USDC through `postJobWithPermit`: permit and post in one transaction.
    UsdcPermit,
}

impl Payment {
    /// The three paths, in the order they are measured (the same for sessions).
    pub(crate) const ALL: [Self; 3] = [Self::UsdcApproved, Self::Eth, Self::UsdcPermit];

    fn label(self) -> &'static str {
        match self {
            Self::Eth => "ETH",
            Self::UsdcApproved => "USDC, approval given",
            Self::UsdcPermit => "USDC by permit",
        }
    }
}

/// Gas of one complete job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobGas {
    /// The post (with the payment).
    pub(crate) post: u64,
    /// The host's claim.
    pub(crate) claim: u64,
    /// The host's result submission, which settles the job.
    pub(crate) submit: u64,
}

impl JobGas {
    /// Post + claim + submit.
    pub(crate) fn total(self) -> u64 {
        self.post + self.claim + self.submit
    }
}

/// Gas of one session, opened and closed by the host with the client's newest receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionGas {
    /// The open (with the deposit).
    pub(crate) open: u64,
    /// A partial settlement in mid-session (the host's first).
    pub(crate) settle: u64,
    /// The close after that partial settlement.
    pub(crate) close_after_settle: u64,
    /// The close of a session with no partial settlement: the cooperative pair's second half.
    pub(crate) close: u64,
}

impl SessionGas {
    /// Open + close, the session's whole cost on chain when nothing is settled on the way
    /// (gas per prompt is 0).
    pub(crate) fn open_close(self) -> u64 {
        self.open + self.close
    }
}

/// Every figure the measurement takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GasFigures {
    /// `register`: one model, two prices, 18 bytes of metadata, the stake already approved.
    pub(crate) register: u64,
    /// `cancelJob` of an unclaimed ETH job (full refund).
    pub(crate) cancel_eth: u64,
    /// The first USDC job (approval given) on a fresh deployment.
    pub(crate) first_usdc_job: JobGas,
    /// One steady-state complete job per payment path, in [`Payment::ALL`] order.
    pub(crate) jobs: Vec<(Payment, JobGas)>,
    /// One steady-state session per payment path, in [`Payment::ALL`] order.
    pub(crate) sessions: Vec<(Payment, SessionGas)>,
}

impl GasFigures {
    /// The steady-state job of one payment path.
    pub(crate) fn job(&self, payment: Payment) -> JobGas {
        self.jobs
            .iter()
            .find(|(p, _)| *p == payment)
            .map(|(_, job)| *job)
            .expect("every path is measured")
    }

    /// The steady-state session of one payment path.
    pub(crate) fn session(&self, payment: Payment) -> SessionGas {
        self.sessions
            .iter()
            .find(|(p, _)| *p == payment)
            .map(|(_, session)| *session)
            .expect("every path is measured")
    }

    /// The figures as a markdown table.
    pub(crate) fn print_table(&self) {
        let usdc = self.job(Payment::UsdcApproved);
        let first = self.first_usdc_job;
        println!("| operation | gas |");
        println!("|---|---:|");
        println!("| register (stake approved) | {} |", self.register);
        println!("| postJob (ETH) | {} |", self.job(Payment::Eth).post);
        println!(
            "| postJobWithToken (USDC, approved) | {} (first), {} (steady) |",
            first.post, usdc.post
        );
        println!(
            "| postJobWithPermit (USDC) | {} |",
            self.job(Payment::UsdcPermit).post
        );
        println!(
            "| claimJob | {} (first), {} (steady) |",
            first.claim, usdc.claim
        );
        println!("| submitResult (ETH) | {} |", self.job(Payment::Eth).submit);
        println!(
            "| submitResult (USDC) | {} (first), {} (steady) |",
            first.submit, usdc.submit
        );
        println!("| cancelJob (ETH) | {} |", self.cancel_eth);
        println!(
            "| complete job, {} (first job of a fresh deployment) | {} |",
            Payment::UsdcApproved.label(),
            first.total()
        );
        for (payment, job) in &self.jobs {
            println!(
                "| complete job, {} (post + claim + submit, steady) | {} |",
                payment.label(),
                job.total()
            );
        }
        for (payment, session) in &self.sessions {
            println!("| openSession, {} | {} |", payment.label(), session.open);
            println!(
                "| settleSession (partial), {} | {} |",
                payment.label(),
                session.settle
            );
            println!(
                "| closeSession with receipt, {} | {} ({} after a partial settlement) |",
                payment.label(),
                session.close,
                session.close_after_settle
            );
            println!(
                "| session open + close, {} (any number of prompts, steady) | {} |",
                payment.label(),
                session.open_close()
            );
        }
    }
}

/// Measures every figure on `env`'s fresh deployment.
///
/// The steady state is what a regular user pays: for each path a first job has already run
/// (the model has its index, the escrow, the host and the treasury hold the token, the permit
/// nonce is no longer zero) and another job's funds are in escrow. USDC with approval is paid
/// by the client, whose allowance is `type(uint256).max`; the permit path by another account
/// that never approves, so that the permit's allowance write is not hidden by a standing one.
pub(crate) async fn measure(env: &Env) -> GasFigures {
    let stake = env.manager.min_stake().await.expect("min stake");
    env.manager
        .approve(
            env.deployment.stake_token,
            env.deployment.contracts.node_registry,
            stake,
            &env.host,
        )
        .await
        .expect("approves stake");
    let register = register_gas(env).await;
    env.approve_spender(&env.client, env.token("USDC"), U256::MAX)
        .await;

    let mut first_usdc_job = None;
    let mut jobs = Vec::new();
    for payment in Payment::ALL {
        let payer = match payment {
            Payment::UsdcPermit => &env.other,
            Payment::Eth | Payment::UsdcApproved => &env.client,
        };
        let first = complete_job(env, payment, payer).await;
        if payment == Payment::UsdcApproved {
            // Measured first, so on a fresh deployment.
            first_usdc_job = Some(first);
        }
        // Another job's funds stay in escrow, as they would on a busy marketplace.
        post(env, payment, payer).await;
        jobs.push((payment, complete_job(env, payment, payer).await));
    }

    let mut sessions = Vec::new();
    for payment in Payment::ALL {
        let payer = match payment {
            Payment::UsdcPermit => &env.other,
            Payment::Eth | Payment::UsdcApproved => &env.client,
        };
        // A first session warms the path, as the first job did.
        session(env, payment, payer, false).await;
        let partial = session(env, payment, payer, true).await;
        let whole = session(env, payment, payer, false).await;
        sessions.push((
            payment,
            SessionGas {
                open: whole.open,
                settle: partial.settle,
                close_after_settle: partial.close_after_settle,
                close: whole.close,
            },
        ));
    }

    let unclaimed = post(env, Payment::Eth, &env.client).await;
    let cancel = env
        .manager
        .cancel_job(unclaimed.job, &env.client)
        .await
        .expect("cancels");
    GasFigures {
        register,
        cancel_eth: gas(&cancel),
        first_usdc_job: first_usdc_job.expect("measured"),
        jobs,
        sessions,
    }
}

fn gas(tx: &TxInfo) -> u64 {
    tx.gas_used.as_u64()
}

/// Posts an open job of 1,000 tokens paid by `payment` from `payer`.
async fn post(env: &Env, payment: Payment, payer: &Arc<WalletSigner>) -> PostedJob {
    let usdc = env.token("USDC");
    let open = Env::open();
    match payment {
        Payment::Eth => {
            let details = env.details(1_000, 1_000_000_000).await;
            let value = details.escrow_amount().expect("no overflow");
            env.manager.post_job(&details, &open, value, payer).await
        }
        Payment::UsdcApproved => {
            let details = env.details(1_000, 10).await;
            let amount = details.escrow_amount().expect("no overflow");
            env.manager
                .post_job_with_token(&details, &open, usdc, amount, payer)
                .await
        }
        Payment::UsdcPermit => {
            let details = env.details(1_000, 10).await;
            let amount = details.escrow_amount().expect("no overflow");
            env.manager
                .post_job_with_permit(&details, &open, usdc, amount, details.deadline, payer)
                .await
        }
    }
    .expect("posts")
}

/// Posts a job, has the host claim it and submit a result: the gas of each step.
async fn complete_job(env: &Env, payment: Payment, payer: &Arc<WalletSigner>) -> JobGas {
    let posted = post(env, payment, payer).await;
    let (claim, submit) = env.settle(posted.job, CID, TOKENS_USED).await;
    JobGas {
        post: gas(&posted.tx),
        claim: gas(&claim),
        submit: gas(&submit.tx),
    }
}

async fn register_gas(env: &Env) -> u64 {
    gas(&env.register(&env.host, 1, &[MODEL]).await)
}

/// Opens a session for 1,000 tokens paid by `payment` from `payer`.
async fn open(env: &Env, payment: Payment, payer: &Arc<WalletSigner>) -> OpenedSession {
    let usdc = env.token("USDC");
    let price = match payment {
        Payment::Eth => 1_000_000_000,
        Payment::UsdcApproved | Payment::UsdcPermit => 10,
    };
    let details = env.session_details(price).await;
    let deposit = TokenAmount::from_base_units(1_000 * price);
    match payment {
        Payment::Eth => env.manager.open_session(&details, deposit, payer).await,
        Payment::UsdcApproved => {
            env.manager
                .open_session_with_token(&details, usdc, deposit, payer)
                .await
        }
        Payment::UsdcPermit => {
            env.manager
                .open_session_with_permit(&details, usdc, deposit, details.expiry, payer)
                .await
        }
    }
    .expect("opens")
}

/// Opens a session, settles [`TOKENS_PARTIAL`] on the way when `partial`, and closes it with
/// the receipt for [`TOKENS_USED`]: the gas of each step (the settle is 0 when not taken).
async fn session(
    env: &Env,
    payment: Payment,
    payer: &Arc<WalletSigner>,
    partial: bool,
) -> SessionGas {
    let opened = open(env, payment, payer).await;
    let key = env.key_of(payer.address());
    let receipt = |tokens| env.receipt_by(key, opened.session, tokens, env.domain());
    let settle = if partial {
        let settled = env
            .manager
            .settle_session(opened.session, &receipt(TOKENS_PARTIAL), &env.host)
            .await
            .expect("settles a part");
        gas(&settled.tx)
    } else {
        0
    };
    let closed = env
        .manager
        .close_session(opened.session, Some(&receipt(TOKENS_USED)), &env.host)
        .await
        .expect("closes");
    let close = gas(&closed.tx);
    SessionGas {
        open: gas(&opened.tx),
        settle,
        close_after_settle: if partial { close } else { 0 },
        close: if partial { 0 } else { close },
    }
}
