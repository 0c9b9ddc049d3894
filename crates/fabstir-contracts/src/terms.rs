//! A job's terms. The marketplace stores them only as a hash in the job's one slot; they are
//! emitted once in the job's JobPosted event (in the block the job id names, `id >> 32`) and
//! passed back with every later call. The manager reads them from that event, checks them
//! against the stored hash, and keeps them in a bounded cache: terms never change, except that
//! a claim sets `host` to the claimer (read from the job's JobClaimed event). A finished job's
//! slot is deleted; its outcome is its last event.

use ethers::abi::{AbiEncode, Tokenizable};
use ethers::contract::{EthEvent, EthLogDecode, parse_log};
use ethers::providers::Middleware;
use ethers::types::{Address, Filter, H256, U256};
use ethers::utils::keccak256;
use fabstir_core::{JobDetails, JobId, ModelId, TokenAmount};

use crate::bindings::job_marketplace::{
    JobCancelledFilter, JobClaimedFilter, JobCompletedFilter, JobExpiredFilter,
    JobMarketplaceEvents, JobPostedFilter, JobReleasedFilter, JobTerms,
};
use crate::convert::non_zero;
use crate::error::{Error, Result};
use crate::manager::{HeadlessContractManager, call};
use crate::types::{JobStatus, OnChainJob};

/// How many jobs' terms a manager keeps.
pub(crate) const CACHED_JOBS: u64 = 4_096;

/// The low bits of a job's slot that hold its status and close window, not the hash.
const HASH_LOW_BYTES: usize = 5;

/// The block a job was posted in, which its id carries.
pub fn posted_block(job: JobId) -> u64 {
    job.0 >> 32
}

/// The hash the marketplace stores for `terms`: `keccak256(abi.encode(terms))` with its low
/// 40 bits cleared.
pub fn terms_hash(terms: &JobTerms) -> H256 {
    let mut hash = keccak256(ethers::abi::encode(&[terms.clone().into_token()]));
    hash[32 - HASH_LOW_BYTES..].fill(0);
    H256(hash)
}

/// A job as the chain holds it now: its status, the end of its close window (while closing)
/// and its current terms (`host` is the claimer once claimed).
#[derive(Debug, Clone)]
pub(crate) struct JobView {
    pub(crate) id: JobId,
    pub(crate) status: JobStatus,
    pub(crate) close_by: u64,
    pub(crate) terms: JobTerms,
}

impl JobView {
    /// The job in core terms. While closing, the deadline is the end of the close window.
    pub(crate) fn to_job(&self) -> OnChainJob {
        let t = &self.terms;
        let deadline = if self.status == JobStatus::Closing {
            self.close_by
        } else {
            t.deadline
        };
        OnChainJob {
            id: self.id,
            client: t.client,
            host: non_zero(t.host),
            token: t.token,
            amount: TokenAmount(amount(t)),
            details: JobDetails {
                model: ModelId(t.model_id),
                prompt_hash: H256(t.prompt_hash),
                max_tokens: t.max_tokens,
                price_per_token: TokenAmount(t.price_per_token),
                deadline,
            },
            status: self.status,
            fee_bps: t.fee_bps,
        }
    }
}

/// A job's escrow: `maxTokens x pricePerToken`.
pub(crate) fn amount(terms: &JobTerms) -> U256 {
    U256::from(terms.max_tokens) * terms.price_per_token
}

fn topic(job: JobId) -> H256 {
    H256::from_slice(&job.to_u256().encode())
}

impl HeadlessContractManager {
    /// The job now: one call for its slot, its terms from the cache or its events.
    pub(crate) async fn job_view(&self, job: JobId) -> Result<JobView> {
        let (status, close_by, stored) =
            call(self.marketplace_read().job_state(job.to_u256())).await?;
        if status == 0 {
            return self.finished_view(job).await;
        }
        let stored = H256(stored);
        let terms = match self.terms_cache().get(&job.0).await {
            Some(terms) if terms_hash(&terms) == stored => terms,
            _ => {
                let terms = self.read_terms(job, stored).await?;
                self.terms_cache().insert(job.0, terms.clone()).await;
                terms
            }
        };
        Ok(JobView {
            id: job,
            status: JobStatus::from_u8(status),
            close_by,
            terms,
        })
    }

    /// The job's current terms as the marketplace's calls take them (`host` is the claimer
    /// once claimed): for callers that build a contract call themselves.
    pub async fn job_terms(&self, job: JobId) -> Result<JobTerms> {
        Ok(self.job_view(job).await?.terms)
    }

    /// Records the claimer of a job this manager just saw claimed.
    pub(crate) async fn remember_claim(&self, view: &JobView, claimer: Address) {
        let mut terms = view.terms.clone();
        terms.host = claimer;
        self.terms_cache().insert(view.id.0, terms).await;
    }

    /// A job whose slot is empty: finished (its last event says how), or never posted.
    async fn finished_view(&self, job: JobId) -> Result<JobView> {
        let latest = self
            .provider()
            .get_block_number()
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        if posted_block(job) == 0 || posted_block(job) > latest.as_u64() {
            // Not an id the marketplace could have given (a peer may send any number).
            return Err(Error::JobNotFound(job));
        }
        let mut terms = match self.posted_terms(job).await {
            Ok(terms) => terms,
            Err(Error::InvalidChainData(_)) => return Err(Error::JobNotFound(job)),
            Err(e) => return Err(e),
        };
        let filter = Filter::new()
            .address(self.addresses().job_marketplace)
            .topic0(ethers::types::ValueOrArray::Array(vec![
                Some(JobCompletedFilter::signature()),
                Some(JobCancelledFilter::signature()),
                Some(JobExpiredFilter::signature()),
                Some(JobReleasedFilter::signature()),
            ]))
            .topic1(topic(job))
            .from_block(posted_block(job));
        let ended: JobMarketplaceEvents = self.first_log(job, "final", filter).await?;
        let status = match ended {
            JobMarketplaceEvents::JobCompletedFilter(e) => {
                terms.host = e.host;
                JobStatus::Completed
            }
            JobMarketplaceEvents::JobReleasedFilter(e) => {
                terms.host = e.host;
                JobStatus::Released
            }
            JobMarketplaceEvents::JobCancelledFilter(_) => JobStatus::Cancelled,
            _ => {
                if terms.host.is_zero() {
                    // An open job expired claimed or not: the claim, if any, names the host.
                    terms.host = self.claimer(job).await.unwrap_or_default();
                }
                JobStatus::Expired
            }
        };
        Ok(JobView {
            id: job,
            status,
            close_by: 0,
            terms,
        })
    }

    /// The job's terms from its events, checked against the `stored` hash.
    async fn read_terms(&self, job: JobId, stored: H256) -> Result<JobTerms> {
        let mut terms = self.posted_terms(job).await?;
        if terms_hash(&terms) == stored {
            return Ok(terms);
        }
        terms.host = self.claimer(job).await?;
        if terms_hash(&terms) == stored {
            return Ok(terms);
        }
        Err(Error::InvalidChainData(format!(
            "job {job}: the terms in its events do not match its stored hash"
        )))
    }

    /// The terms emitted in the job's JobPosted event.
    async fn posted_terms(&self, job: JobId) -> Result<JobTerms> {
        let block = posted_block(job);
        let filter = self
            .job_filter::<JobPostedFilter>(job)
            .from_block(block)
            .to_block(block);
        let event: JobPostedFilter = self.first_log(job, "JobPosted", filter).await?;
        Ok(event.terms)
    }

    /// The host named in the job's JobClaimed event.
    async fn claimer(&self, job: JobId) -> Result<Address> {
        let filter = self
            .job_filter::<JobClaimedFilter>(job)
            .from_block(posted_block(job));
        let event: JobClaimedFilter = self.first_log(job, "JobClaimed", filter).await?;
        Ok(event.host)
    }

    fn job_filter<E: EthEvent>(&self, job: JobId) -> Filter {
        Filter::new()
            .address(self.addresses().job_marketplace)
            .topic0(E::signature())
            .topic1(topic(job))
    }

    /// The first log `filter` finds, decoded; `what` names the event in errors.
    pub(crate) async fn first_log<E: EthLogDecode>(
        &self,
        job: JobId,
        what: &str,
        filter: Filter,
    ) -> Result<E> {
        let logs = self
            .provider()
            .get_logs(&filter)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        let log = logs
            .into_iter()
            .next()
            .ok_or_else(|| Error::InvalidChainData(format!("job {job} has no {what} event")))?;
        parse_log(log).map_err(|e| Error::InvalidChainData(format!("{what} of job {job}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> JobTerms {
        JobTerms {
            client: Address::repeat_byte(1),
            host: Address::zero(),
            token: Address::repeat_byte(2),
            model_id: [3; 32],
            prompt_hash: [4; 32],
            max_tokens: 1_000,
            price_per_token: U256::from(5u64),
            deadline: 1_700_000_000,
            fee_bps: 250,
        }
    }

    #[test]
    fn the_hash_covers_every_term_and_leaves_the_low_bytes_to_the_status() {
        let base = terms_hash(&terms());
        assert_eq!(&base.0[27..], &[0; 5]);
        assert_ne!(&base.0[..27], &[0; 27]);
        let mut claimed = terms();
        claimed.host = Address::repeat_byte(9);
        assert_ne!(terms_hash(&claimed), base);
        let mut cheaper = terms();
        cheaper.price_per_token = U256::from(4u64);
        assert_ne!(terms_hash(&cheaper), base);
        let mut other_fee = terms();
        other_fee.fee_bps = 0;
        assert_ne!(terms_hash(&other_fee), base);
    }

    #[test]
    fn a_job_id_names_its_block() {
        assert_eq!(posted_block(JobId((77 << 32) | 5)), 77);
        assert_eq!(amount(&terms()), U256::from(5_000u64));
    }
}
