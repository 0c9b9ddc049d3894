//! In-memory layers for unit tests of code built on the SDK (and of the SDK's own lifecycle
//! logic): a chain that keeps jobs and balances in maps with the marketplace's rules, and a
//! network of scripted hosts that claim, stream and settle on that chain, or misbehave on
//! purpose. Behind the `test-utils` feature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ethers::signers::{LocalWallet, Signer as _};
use fabstir_contracts::{JobStatus, LoggedEvent, MarketplaceEvent, OnChainJob};
use fabstir_core::node::NodeHistory;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::wire::{
    JobRequest, JobResponse, PromptFrame, Quote, RejectReason, StreamDone, StreamToken, TokenBatch,
};
use fabstir_core::{
    DiscoveredNode, JobDetails, JobId, JobRequirements, NodeCapabilities, NodePeerId, PaymentToken,
    ProviderQuery, TokenAmount, TokenPrice,
};
use fabstir_p2p::{ClientSigner, StreamEvent};
use fabstir_payments::JobPayment;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::layers::{ChainLayer, NetworkLayer};
use crate::{Error, Result};

/// Protocol fee of the in-memory marketplace, in basis points.
pub const FEE_BPS: u64 = 100;

#[derive(Debug, Default)]
struct ChainState {
    jobs: HashMap<JobId, OnChainJob>,
    events: Vec<LoggedEvent>,
    balances: HashMap<(Address, Address), TokenAmount>,
    next_job: u64,
}

/// A marketplace in memory: post (balance checked and moved to escrow), claim, settle with
/// `min(tokens x price, escrow)` less a 1% fee, cancel, expire (after the deadline on its
/// clock, which [`InMemoryChain::advance`] moves), and events for all of it.
#[derive(Debug)]
pub struct InMemoryChain {
    chain_id: u64,
    tokens: Vec<PaymentToken>,
    treasury: Address,
    offset: AtomicU64,
    state: Mutex<ChainState>,
}

impl InMemoryChain {
    /// A chain with these tokens; fees go to `treasury`.
    pub fn new(chain_id: u64, tokens: Vec<PaymentToken>, treasury: Address) -> Self {
        Self {
            chain_id,
            tokens,
            treasury,
            offset: AtomicU64::new(0),
            state: Mutex::new(ChainState {
                next_job: 1,
                ..ChainState::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Credits `amount` of `token` to `owner`.
    pub fn mint(&self, owner: Address, token: Address, amount: TokenAmount) {
        let mut state = self.state();
        let balance = state.balances.entry((owner, token)).or_default();
        *balance = balance.checked_add(amount).unwrap_or(*balance);
    }

    /// `owner`'s balance of `token`.
    pub fn balance_of(&self, owner: Address, token: Address) -> TokenAmount {
        self.state()
            .balances
            .get(&(owner, token))
            .copied()
            .unwrap_or_default()
    }

    /// Moves the chain's clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// Sum of the escrows of open jobs, per token.
    pub fn escrowed(&self, token: Address) -> TokenAmount {
        self.state()
            .jobs
            .values()
            .filter(|j| j.token == token && j.status.is_open())
            .fold(TokenAmount::ZERO, |sum, j| {
                sum.checked_add(j.amount).unwrap_or(sum)
            })
    }

    fn clock(&self) -> u64 {
        unix_now() + self.offset.load(Ordering::SeqCst)
    }

    fn log(state: &mut ChainState, event: MarketplaceEvent) {
        let block = state.events.len() as u64 + 1;
        state.events.push(LoggedEvent {
            event,
            block,
            tx_hash: H256::zero(),
            log_index: 0,
        });
    }

    /// A host claims a job (what a real host's `claimJob` does).
    pub fn claim(&self, job: JobId, host: Address) -> Result<()> {
        let mut state = self.state();
        let entry = state.jobs.get_mut(&job).ok_or(Error::JobNotFound(job))?;
        if entry.status != JobStatus::Posted || entry.host.is_some_and(|h| h != host) {
            return Err(reverted(format!(
                "job {job} cannot be claimed by {host:#x}"
            )));
        }
        entry.status = JobStatus::Claimed;
        entry.host = Some(host);
        Self::log(&mut state, MarketplaceEvent::JobClaimed { job, host });
        Ok(())
    }

    /// The claiming host submits a result and the escrow is settled.
    pub fn submit(&self, job: JobId, host: Address, cid: &str, tokens_used: u64) -> Result<()> {
        let mut state = self.state();
        let entry = state
            .jobs
            .get(&job)
            .cloned()
            .ok_or(Error::JobNotFound(job))?;
        if entry.status != JobStatus::Claimed || entry.host != Some(host) {
            return Err(reverted(format!(
                "job {job} cannot be settled by {host:#x}"
            )));
        }
        let cost = entry
            .details
            .price_per_token
            .checked_mul(tokens_used)
            .unwrap_or(entry.amount)
            .min(entry.amount);
        let fee = TokenAmount(cost.base_units() * FEE_BPS / 10_000);
        let paid = cost.checked_sub(fee).unwrap_or_default();
        let refund = entry.amount.checked_sub(cost).unwrap_or_default();
        for (to, amount) in [(host, paid), (self.treasury, fee), (entry.client, refund)] {
            let balance = state.balances.entry((to, entry.token)).or_default();
            *balance = balance.checked_add(amount).unwrap_or(*balance);
        }
        if let Some(j) = state.jobs.get_mut(&job) {
            j.status = JobStatus::Completed;
        }
        Self::log(
            &mut state,
            MarketplaceEvent::JobCompleted {
                job,
                host,
                result_cid: cid.as_bytes().to_vec(),
                tokens_used: tokens_used.into(),
                paid,
                fee,
                refund,
            },
        );
        Ok(())
    }

    fn refund(&self, job: JobId, expire: bool, caller: Address) -> Result<()> {
        let now = self.clock();
        let mut state = self.state();
        let entry = state
            .jobs
            .get(&job)
            .cloned()
            .ok_or(Error::JobNotFound(job))?;
        let allowed = if expire {
            entry.status.is_open() && now > entry.details.deadline
        } else {
            entry.status == JobStatus::Posted && caller == entry.client
        };
        if !allowed {
            return Err(reverted(format!(
                "job {job} is {} and cannot be refunded now",
                entry.status
            )));
        }
        let balance = state
            .balances
            .entry((entry.client, entry.token))
            .or_default();
        *balance = balance.checked_add(entry.amount).unwrap_or(*balance);
        if let Some(j) = state.jobs.get_mut(&job) {
            j.status = if expire {
                JobStatus::Expired
            } else {
                JobStatus::Cancelled
            };
        }
        let event = if expire {
            MarketplaceEvent::JobExpired {
                job,
                caller,
                refund: entry.amount,
            }
        } else {
            MarketplaceEvent::JobCancelled {
                job,
                client: caller,
                refund: entry.amount,
            }
        };
        Self::log(&mut state, event);
        Ok(())
    }
}

fn reverted(message: String) -> Error {
    Error::Contracts(fabstir_contracts::Error::Rpc(message))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[async_trait]
impl ChainLayer for InMemoryChain {
    fn chain_id(&self) -> u64 {
        self.chain_id
    }

    fn marketplace(&self) -> Address {
        Address::repeat_byte(0xaa)
    }

    fn token(&self, symbol_or_address: &str) -> Result<PaymentToken> {
        self.tokens
            .iter()
            .find(|t| {
                t.symbol.eq_ignore_ascii_case(symbol_or_address)
                    || format!("{:#x}", t.address()).eq_ignore_ascii_case(symbol_or_address)
            })
            .cloned()
            .ok_or_else(|| {
                fabstir_payments::Error::TokenNotAccepted(symbol_or_address.into()).into()
            })
    }

    async fn now(&self) -> Result<u64> {
        Ok(self.clock())
    }

    async fn balance(&self, owner: Address, token: &PaymentToken) -> Result<TokenAmount> {
        Ok(self.balance_of(owner, token.address()))
    }

    async fn post_job(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        wallet: &LocalWallet,
    ) -> Result<JobId> {
        let client = wallet.address();
        let token = payment.token.address();
        let mut state = self.state();
        let have = state
            .balances
            .get(&(client, token))
            .copied()
            .unwrap_or_default();
        let Some(left) = have.checked_sub(payment.amount) else {
            return Err(fabstir_payments::Error::InsufficientBalance {
                symbol: payment.token.symbol.clone(),
                need: payment.token.format_amount(payment.amount),
                have: payment.token.format_amount(have),
            }
            .into());
        };
        state.balances.insert((client, token), left);
        let job = JobId(state.next_job);
        state.next_job += 1;
        state.jobs.insert(
            job,
            OnChainJob {
                id: job,
                client,
                host: requirements.assigned_host,
                token,
                amount: payment.amount,
                details: details.clone(),
                status: JobStatus::Posted,
            },
        );
        Self::log(
            &mut state,
            MarketplaceEvent::JobPosted {
                job,
                client,
                model: details.model,
                token,
                amount: payment.amount,
                host: requirements.assigned_host,
                prompt_hash: details.prompt_hash,
                max_tokens: details.max_tokens,
                price_per_token: details.price_per_token,
                deadline: details.deadline,
            },
        );
        Ok(job)
    }

    async fn job(&self, id: JobId) -> Result<OnChainJob> {
        self.state()
            .jobs
            .get(&id)
            .cloned()
            .ok_or(Error::JobNotFound(id))
    }

    async fn cancel_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()> {
        self.refund(id, false, wallet.address())
    }

    async fn expire_job(&self, id: JobId, wallet: &LocalWallet) -> Result<()> {
        self.refund(id, true, wallet.address())
    }

    async fn job_events(&self, id: JobId) -> Result<Vec<LoggedEvent>> {
        Ok(self
            .state()
            .events
            .iter()
            .filter(|e| e.event.job() == Some(id))
            .cloned()
            .collect())
    }
}

/// How a scripted host behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBehaviour {
    /// Quotes, claims, streams `tokens` tokens, settles.
    Honest,
    /// Quotes and accepts but never claims.
    NeverClaims,
    /// Claims, streams this many tokens, then the connection breaks.
    DiesAfter(usize),
    /// Streams and settles, but signs and submits the CID of other text.
    WrongCid,
}

/// A scripted host of the [`InMemoryNetwork`].
#[derive(Debug, Clone)]
pub struct ScriptedHost {
    /// What it advertises.
    pub capabilities: NodeCapabilities,
    /// Measured latency discovery reports.
    pub latency: Duration,
    /// How it behaves.
    pub behaviour: HostBehaviour,
    /// Tokens it generates per job (each token's text is `"tok{i} "`).
    pub tokens: usize,
}

impl ScriptedHost {
    /// A host at `address` serving `model` at `price` per token of `token`.
    pub fn new(
        index: u8,
        model: fabstir_core::ModelId,
        token: Address,
        price: TokenAmount,
        behaviour: HostBehaviour,
    ) -> Self {
        let mut peer = vec![0x12, 0x20];
        peer.extend([index; 32]);
        Self {
            capabilities: NodeCapabilities {
                peer_id: NodePeerId::from_bytes(peer)
                    .expect("a sha2-256 multihash of 32 bytes is a valid peer id"),
                eth_address: Address::repeat_byte(index),
                models: vec![model],
                prices: vec![TokenPrice {
                    token,
                    price_per_token: price,
                }],
                max_tokens: 1_000,
                current_load: 0,
                max_concurrent: 4,
                queue_depth: 0,
                version: "scripted/0".into(),
            },
            latency: Duration::from_millis(u64::from(index)),
            behaviour,
            tokens: 5,
        }
    }
}

/// A network of scripted hosts that act on an [`InMemoryChain`].
#[derive(Debug)]
pub struct InMemoryNetwork {
    chain: Arc<InMemoryChain>,
    hosts: Vec<ScriptedHost>,
    history: Mutex<HashMap<NodePeerId, NodeHistory>>,
}

impl InMemoryNetwork {
    /// A network of `hosts` on `chain`.
    pub fn new(chain: Arc<InMemoryChain>, hosts: Vec<ScriptedHost>) -> Self {
        Self {
            chain,
            hosts,
            history: Mutex::new(HashMap::new()),
        }
    }

    fn host(&self, peer: &NodePeerId) -> Result<&ScriptedHost> {
        self.hosts
            .iter()
            .find(|h| &h.capabilities.peer_id == peer)
            .ok_or_else(|| {
                Error::P2p(fabstir_p2p::Error::Dial {
                    peer: peer.to_string(),
                    reason: "unknown host".into(),
                })
            })
    }

    /// The history recorded for a host.
    pub fn history(&self, peer: &NodePeerId) -> NodeHistory {
        self.history
            .lock()
            .map(|h| h.get(peer).copied().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[async_trait]
impl NetworkLayer for InMemoryNetwork {
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        Ok(self
            .hosts
            .iter()
            .map(|h| DiscoveredNode {
                capabilities: h.capabilities.clone(),
                addresses: Vec::new(),
                latency: h.latency,
                history: self.history(&h.capabilities.peer_id),
            })
            .filter(|n| query.matches(n))
            .collect())
    }

    async fn negotiate(&self, peer: &NodePeerId, request: JobRequest) -> Result<JobResponse> {
        let host = self.host(peer)?;
        let caps = &host.capabilities;
        Ok(match request {
            JobRequest::Quote(q) => match caps.price_for(q.token) {
                Some(price) if caps.serves(&q.model) && q.offered_price_per_token >= price => {
                    JobResponse::Quote(Quote {
                        host: caps.eth_address,
                        model: q.model,
                        price_per_token: price,
                        token: q.token,
                        max_tokens: q.max_tokens,
                        valid_until: unix_now() + 60,
                    })
                }
                _ => JobResponse::Rejected {
                    reason: RejectReason::PriceTooLow,
                    message: "no".into(),
                },
            },
            JobRequest::Posted { job } => {
                if host.behaviour != HostBehaviour::NeverClaims {
                    self.chain.claim(job, caps.eth_address)?;
                }
                JobResponse::Accepted { job }
            }
        })
    }

    async fn open_stream(
        &self,
        peer: &NodePeerId,
        job: JobId,
        _signer: &dyn ClientSigner,
        _prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>> {
        let host = self.host(peer)?.clone();
        let texts: Vec<String> = (0..host.tokens).map(|i| format!("tok{i} ")).collect();
        let mut events: Vec<Result<StreamEvent>> = Vec::new();
        let stop = match host.behaviour {
            HostBehaviour::DiesAfter(n) => n.min(texts.len()),
            _ => texts.len(),
        };
        for (i, text) in texts.iter().enumerate().take(stop) {
            events.push(Ok(StreamEvent::Tokens(TokenBatch {
                first_index: i as u64,
                tokens: vec![StreamToken {
                    id: i as u32,
                    text: text.clone(),
                }],
            })));
        }
        if let HostBehaviour::DiesAfter(_) = host.behaviour {
            events.push(Err(Error::P2p(fabstir_p2p::Error::Truncated(
                "connection reset".into(),
            ))));
        } else {
            let full: String = texts.concat();
            let reported = if host.behaviour == HostBehaviour::WrongCid {
                "not what was streamed".to_owned()
            } else {
                full.clone()
            };
            let cid = fabstir_storage::cid_of(reported.as_bytes()).to_string();
            self.chain
                .submit(job, host.capabilities.eth_address, &cid, texts.len() as u64)?;
            events.push(Ok(StreamEvent::Done(StreamDone {
                result_cid: cid,
                tokens_used: texts.len() as u64,
                signature: Vec::new(),
            })));
        }
        Ok(futures::stream::iter(events).boxed())
    }

    fn record_outcome(&self, host: &NodePeerId, success: bool) {
        if let Ok(mut history) = self.history.lock() {
            let entry = history.entry(host.clone()).or_default();
            if success {
                entry.successes += 1;
            } else {
                entry.failures += 1;
            }
        }
    }
}
