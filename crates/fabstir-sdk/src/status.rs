//! What the chain says of a job: [`JobStatusReport`], rebuilt from its record and outcome,
//! for status queries and for recovery after a restart.

use fabstir_core::cid::Cid;
use fabstir_core::primitives::Address;
use fabstir_core::{JobId, JobOutcome, JobSettlement, JobState, JobStatus, TokenAmount};

use crate::Result;
use crate::ports::ChainLayer;

/// What the SDK knows of a job it ran or recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatusReport {
    /// The job.
    pub job: JobId,
    /// Its lifecycle state as far as the chain shows it.
    pub state: JobState,
    /// The client that posted it.
    pub client: Address,
    /// The host that claimed it, if any.
    pub host: Option<Address>,
    /// The payment token (zero address for ETH).
    pub token: Address,
    /// The escrowed amount.
    pub amount: TokenAmount,
    /// The submitted result's CID, once completed.
    pub result_cid: Option<Cid>,
    /// How the escrow was split (host, fee, refund), once settled.
    pub settlement: Option<JobSettlement>,
    /// Refunded without a result (cancelled, expired or released).
    pub refunded: Option<TokenAmount>,
}

/// The lifecycle state a job's on-chain status shows.
pub(crate) fn state_of(status: JobStatus) -> JobState {
    match status {
        JobStatus::Posted => JobState::Posted,
        JobStatus::Claimed => JobState::Claimed,
        JobStatus::Completed => JobState::PaymentReleased,
        _ => JobState::Failed,
    }
}

/// A job's state and money as the chain records them.
pub(crate) async fn status_from_chain(
    chain: &dyn ChainLayer,
    job: JobId,
) -> Result<JobStatusReport> {
    let on_chain = chain.job(job).await?;
    let outcome = chain.job_outcome(job).await?;
    let mut report = JobStatusReport {
        job,
        state: state_of(on_chain.status),
        client: on_chain.client,
        host: on_chain.host,
        token: on_chain.token,
        amount: on_chain.amount,
        result_cid: None,
        settlement: None,
        refunded: None,
    };
    match outcome {
        Some(JobOutcome::Settled(settlement)) => {
            report.result_cid = settlement.result_cid;
            report.settlement = Some(settlement);
        }
        Some(JobOutcome::Refunded { amount, .. }) => report.refunded = Some(amount),
        None => {}
    }
    Ok(report)
}
