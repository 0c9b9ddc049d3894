//! Typed marketplace events: past-event queries and a polling subscription that works over
//! plain HTTP.

use ethers::contract::parse_log;
use ethers::providers::Middleware;
use ethers::types::{Address, BlockNumber, Filter, H256, Log, U256};
use fabstir_core::{JobId, JobOutcome, JobSettlement, ModelId, RefundReason, TokenAmount};
use futures::{Stream, StreamExt};

use crate::bindings::job_marketplace::JobMarketplaceEvents as Raw;
use crate::convert::{job_id, non_zero};
use crate::error::{Error, Result};
use crate::manager::HeadlessContractManager;

/// An event of the JobMarketplace, in domain types.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarketplaceEvent {
    /// A job was posted and its payment escrowed.
    JobPosted {
        /// The job.
        job: JobId,
        /// Who posted it.
        client: Address,
        /// The model asked for.
        model: ModelId,
        /// The payment token (zero address: ETH).
        token: Address,
        /// The escrowed amount.
        amount: TokenAmount,
        /// The assigned host, or `None` for an open job.
        host: Option<Address>,
        /// `keccak256` of the prompt.
        prompt_hash: H256,
        /// The most tokens paid for.
        max_tokens: u32,
        /// Price per token in the payment token's base units.
        price_per_token: TokenAmount,
        /// Unix time after which the job can be expired.
        deadline: u64,
    },
    /// A host claimed a job.
    JobClaimed {
        /// The job.
        job: JobId,
        /// The claiming host.
        host: Address,
    },
    /// A job finished and was settled.
    JobCompleted {
        /// The job.
        job: JobId,
        /// The host that ran it.
        host: Address,
        /// The result's CID bytes.
        result_cid: Vec<u8>,
        /// The transcript hash of the client's receipt.
        transcript: H256,
        /// Tokens the client's receipt counts (what was paid for).
        tokens_used: U256,
        /// Paid to the host after the fee.
        paid: TokenAmount,
        /// Paid to the treasury.
        fee: TokenAmount,
        /// Returned to the client.
        refund: TokenAmount,
    },
    /// The client cancelled an unclaimed job.
    JobCancelled {
        /// The job.
        job: JobId,
        /// The client.
        client: Address,
        /// Refunded amount.
        refund: TokenAmount,
    },
    /// An unfinished job passed its deadline and was refunded.
    JobExpired {
        /// The job.
        job: JobId,
        /// Who expired it.
        caller: Address,
        /// Refunded amount.
        refund: TokenAmount,
    },
    /// The claiming host gave the job up and the client was refunded.
    JobReleased {
        /// The job.
        job: JobId,
        /// The host.
        host: Address,
        /// Refunded amount.
        refund: TokenAmount,
    },
    /// The owner added or removed a payment token.
    TokenAcceptanceChanged {
        /// The token (zero address: ETH).
        token: Address,
        /// Whether it is now accepted.
        accepted: bool,
    },
    /// Another marketplace event (fee, treasury or ownership changes).
    Other,
}

impl MarketplaceEvent {
    /// The job this event is about, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            Self::JobPosted { job, .. }
            | Self::JobClaimed { job, .. }
            | Self::JobCompleted { job, .. }
            | Self::JobCancelled { job, .. }
            | Self::JobExpired { job, .. }
            | Self::JobReleased { job, .. } => Some(*job),
            Self::TokenAcceptanceChanged { .. } | Self::Other => None,
        }
    }

    /// How the job ended, if this event ends one: a settlement or a refund.
    pub fn outcome(&self) -> Option<JobOutcome> {
        let refunded = |reason, amount: &TokenAmount| {
            Some(JobOutcome::Refunded {
                reason,
                amount: *amount,
            })
        };
        match self {
            Self::JobCompleted {
                host,
                result_cid,
                transcript,
                tokens_used,
                paid,
                fee,
                refund,
                ..
            } => Some(JobOutcome::Settled(JobSettlement {
                host: *host,
                result_cid: std::str::from_utf8(result_cid)
                    .ok()
                    .and_then(|text| fabstir_core::cid::parse_cid(text).ok()),
                transcript: *transcript,
                tokens_used: tokens_used.low_u64(),
                paid: *paid,
                fee: *fee,
                refund: *refund,
            })),
            Self::JobCancelled { refund, .. } => refunded(RefundReason::Cancelled, refund),
            Self::JobExpired { refund, .. } => refunded(RefundReason::Expired, refund),
            Self::JobReleased { refund, .. } => refunded(RefundReason::Released, refund),
            _ => None,
        }
    }
}

/// An event with where it was logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The event.
    pub event: MarketplaceEvent,
    /// Block number.
    pub block: u64,
    /// Transaction hash.
    pub tx_hash: H256,
    /// Index of the log in its block.
    pub log_index: u64,
}

impl HeadlessContractManager {
    /// Marketplace events from `from_block` to `to_block` (inclusive; `None` = latest).
    pub async fn past_events(
        &self,
        from_block: u64,
        to_block: Option<u64>,
    ) -> Result<Vec<LoggedEvent>> {
        let filter = self.event_filter(from_block, to_block);
        self.query(&filter).await
    }

    /// Every marketplace event about `job`, oldest first, from `from_block`.
    pub async fn job_events(&self, job: JobId, from_block: u64) -> Result<Vec<LoggedEvent>> {
        let mut topic = [0u8; 32];
        job.to_u256().to_big_endian(&mut topic);
        let filter = self.event_filter(from_block, None).topic1(H256(topic));
        self.query(&filter).await
    }

    /// A stream of marketplace events from `from_block` on, polling the node at the
    /// provider's interval. RPC errors are yielded and polling continues.
    pub fn watch_events(
        &self,
        from_block: u64,
    ) -> impl Stream<Item = Result<LoggedEvent>> + Send + 'static {
        let manager = self.clone();
        futures::stream::unfold((manager, from_block), |(manager, next)| async move {
            let interval = manager.provider().get_interval();
            loop {
                let head = match manager.provider().get_block_number().await {
                    Ok(head) => head.as_u64(),
                    Err(e) => {
                        tokio::time::sleep(interval).await;
                        return Some((vec![Err(Error::Rpc(e.to_string()))], (manager, next)));
                    }
                };
                if head >= next {
                    return match manager.past_events(next, Some(head)).await {
                        Ok(events) => {
                            Some((events.into_iter().map(Ok).collect(), (manager, head + 1)))
                        }
                        Err(e) => {
                            tokio::time::sleep(interval).await;
                            Some((vec![Err(e)], (manager, next)))
                        }
                    };
                }
                tokio::time::sleep(interval).await;
            }
        })
        .flat_map(futures::stream::iter)
    }

    fn event_filter(&self, from_block: u64, to_block: Option<u64>) -> Filter {
        Filter::new()
            .address(self.addresses().job_marketplace)
            .from_block(from_block)
            .to_block(to_block.map_or(BlockNumber::Latest, BlockNumber::from))
    }

    async fn query(&self, filter: &Filter) -> Result<Vec<LoggedEvent>> {
        let logs = self
            .provider()
            .get_logs(filter)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        logs.into_iter().map(decode).collect()
    }
}

/// Decodes one marketplace log.
fn decode(log: Log) -> Result<LoggedEvent> {
    let block = log.block_number.map(|b| b.as_u64()).unwrap_or_default();
    let tx_hash = log.transaction_hash.unwrap_or_default();
    let log_index = log.log_index.map(|i| i.low_u64()).unwrap_or_default();
    let raw: Raw =
        parse_log(log).map_err(|e| Error::InvalidChainData(format!("marketplace log: {e}")))?;
    let event = match raw {
        Raw::JobPostedFilter(e) => MarketplaceEvent::JobPosted {
            job: job_id(e.job_id)?,
            client: e.terms.client,
            model: ModelId(e.terms.model_id),
            token: e.terms.token,
            amount: TokenAmount(crate::terms::amount(&e.terms)),
            host: non_zero(e.terms.host),
            prompt_hash: H256(e.terms.prompt_hash),
            max_tokens: e.terms.max_tokens,
            price_per_token: TokenAmount(e.terms.price_per_token),
            deadline: e.terms.deadline,
        },
        Raw::JobClaimedFilter(e) => MarketplaceEvent::JobClaimed {
            job: job_id(e.job_id)?,
            host: e.host,
        },
        Raw::JobCompletedFilter(e) => MarketplaceEvent::JobCompleted {
            job: job_id(e.job_id)?,
            host: e.host,
            result_cid: e.result_cid.to_vec(),
            transcript: H256(e.transcript),
            tokens_used: e.tokens_used,
            paid: TokenAmount(e.paid),
            fee: TokenAmount(e.fee),
            refund: TokenAmount(e.refund),
        },
        Raw::JobCancelledFilter(e) => MarketplaceEvent::JobCancelled {
            job: job_id(e.job_id)?,
            client: e.client,
            refund: TokenAmount(e.refund),
        },
        Raw::JobExpiredFilter(e) => MarketplaceEvent::JobExpired {
            job: job_id(e.job_id)?,
            caller: e.caller,
            refund: TokenAmount(e.refund),
        },
        Raw::JobReleasedFilter(e) => MarketplaceEvent::JobReleased {
            job: job_id(e.job_id)?,
            host: e.host,
            refund: TokenAmount(e.refund),
        },
        Raw::TokenAcceptanceChangedFilter(e) => MarketplaceEvent::TokenAcceptanceChanged {
            token: e.token,
            accepted: e.accepted,
        },
        _ => MarketplaceEvent::Other,
    };
    Ok(LoggedEvent {
        event,
        block,
        tx_hash,
        log_index,
    })
}
