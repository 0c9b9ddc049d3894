//! Reading sessions. The marketplace stores a session as a hash of its terms in the id's slot
//! (shared with jobs) and, once it changes, what was added and settled in a second slot
//! (`sessionState`). The terms are emitted once in SessionOpened, in the block the id names, so
//! the manager reads them from that one block, checks them against the stored hash and caches
//! them: a session's terms never change. A finished session's slots are deleted; its last
//! event (SessionClosed or SessionExpired, searched from the opening block on) says how it
//! ended.

use ethers::abi::{AbiEncode, Tokenizable};
use ethers::contract::{EthEvent, parse_log};
use ethers::providers::Middleware;
use ethers::types::{Address, Filter, H256, U256, ValueOrArray};
use ethers::utils::keccak256;
use fabstir_core::{
    ModelId, OnChainSession, SessionDetails, SessionId, SessionStatus, TokenAmount,
};

use crate::bindings::job_marketplace::{
    JobMarketplaceEvents, SessionClosedFilter, SessionExpiredFilter, SessionOpenedFilter,
    SessionTerms,
};
use crate::convert;
use crate::error::{Error, Result};
use crate::manager::{HeadlessContractManager, call};
use crate::terms::posted_block;

/// The slot status of an open session (the contract's `JobStatus.SessionOpen`).
const SESSION_OPEN: u8 = 8;
/// The slot status of a closing session (`JobStatus.SessionClosing`).
const SESSION_CLOSING: u8 = 9;

/// The hash the marketplace stores for a session's `terms`: `keccak256(abi.encode(terms))`
/// with its low 41 bits cleared (40 as for jobs, and the bit saying the session's second slot
/// is in use).
pub fn session_terms_hash(terms: &SessionTerms) -> H256 {
    let mut hash = keccak256(ethers::abi::encode(&[terms.clone().into_token()]));
    hash[27..].fill(0);
    hash[26] &= 0xFE;
    H256(hash)
}

/// A session as the chain holds it now.
#[derive(Debug, Clone)]
pub(crate) struct SessionView {
    pub(crate) id: SessionId,
    pub(crate) status: SessionStatus,
    pub(crate) close_by: u64,
    pub(crate) terms: SessionTerms,
    pub(crate) topped_up: U256,
    pub(crate) settled_tokens: u64,
}

impl SessionView {
    fn to_session(&self) -> OnChainSession {
        let t = &self.terms;
        OnChainSession {
            id: self.id,
            client: t.client,
            token: t.token,
            details: SessionDetails {
                model: ModelId(t.model_id),
                host: t.host,
                price_per_token: TokenAmount(t.price_per_token),
                expiry: t.expiry,
            },
            deposit: TokenAmount(t.deposit.saturating_add(self.topped_up)),
            settled_tokens: self.settled_tokens,
            fee_bps: t.fee_bps,
            status: self.status,
            close_by: (self.status == SessionStatus::Closing).then_some(self.close_by),
        }
    }
}

impl HeadlessContractManager {
    /// The session with this id, open or finished; [`Error::SessionNotFound`] when there is
    /// none (or the id is a job's).
    pub async fn session(&self, id: SessionId) -> Result<OnChainSession> {
        Ok(self.session_view(id).await?.to_session())
    }

    /// The session's terms as the marketplace's calls take them: for callers that build a
    /// contract call themselves.
    pub async fn session_terms(&self, id: SessionId) -> Result<SessionTerms> {
        Ok(self.session_view(id).await?.terms)
    }

    /// The ids of every session ever opened, from the SessionOpened events since block 0: for
    /// tests and audits (public RPC providers refuse such ranges).
    pub async fn all_sessions(&self) -> Result<Vec<SessionId>> {
        self.opened_since(0)
            .await?
            .into_iter()
            .map(|event| convert::job_id(event.session_id))
            .collect()
    }

    /// Every session `client` opened since `from_block` (a deployment's first block), as the
    /// chain holds each now, open or finished. It reads the SessionOpened events of that
    /// range: the client is not an indexed topic, so each event's terms are checked.
    pub async fn sessions_of(
        &self,
        client: Address,
        from_block: u64,
    ) -> Result<Vec<OnChainSession>> {
        let mut found = Vec::new();
        for event in self.opened_since(from_block).await? {
            if event.terms.client == client {
                found.push(self.session(convert::job_id(event.session_id)?).await?);
            }
        }
        Ok(found)
    }

    async fn opened_since(&self, from_block: u64) -> Result<Vec<SessionOpenedFilter>> {
        let filter = Filter::new()
            .address(self.addresses().job_marketplace)
            .topic0(SessionOpenedFilter::signature())
            .from_block(from_block);
        let logs = self
            .provider()
            .get_logs(&filter)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        logs.into_iter()
            .map(|log| {
                parse_log(log).map_err(|e| Error::InvalidChainData(format!("SessionOpened: {e}")))
            })
            .collect()
    }

    pub(crate) async fn open_session_view(&self, id: SessionId) -> Result<SessionView> {
        let view = self.session_view(id).await?;
        if view.status.is_open() {
            Ok(view)
        } else {
            Err(Error::SessionNotOpen {
                session: id,
                status: view.status,
            })
        }
    }

    pub(crate) async fn session_view(&self, id: SessionId) -> Result<SessionView> {
        let (status, close_by, stored, topped_up, settled_tokens) =
            call(self.marketplace_read().session_state(id.to_u256())).await?;
        let status = match status {
            0 => return self.finished_session(id).await,
            SESSION_OPEN => SessionStatus::Open,
            SESSION_CLOSING => SessionStatus::Closing,
            // The id is a job's.
            _ => return Err(Error::SessionNotFound(id)),
        };
        let stored = H256(stored);
        let terms = match self.session_terms_cache().get(&id.0).await {
            Some(terms) if session_terms_hash(&terms) == stored => terms,
            _ => {
                let terms = self.opened_terms(id).await?;
                if session_terms_hash(&terms) != stored {
                    return Err(Error::InvalidChainData(format!(
                        "session {id}: the terms in its SessionOpened event do not match its hash"
                    )));
                }
                self.session_terms_cache().insert(id.0, terms.clone()).await;
                terms
            }
        };
        Ok(SessionView {
            id,
            status,
            close_by,
            terms,
            topped_up,
            settled_tokens,
        })
    }

    /// Forgets a finished session's cached terms.
    pub(crate) async fn forget_session(&self, id: SessionId) {
        self.session_terms_cache().invalidate(&id.0).await;
    }

    /// A session whose slot is empty: finished (its last event says how), or never opened.
    async fn finished_session(&self, id: SessionId) -> Result<SessionView> {
        let latest = self
            .provider()
            .get_block_number()
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        let block = posted_block(id);
        if block == 0 || block > latest.as_u64() {
            return Err(Error::SessionNotFound(id));
        }
        let terms = match self.opened_terms(id).await {
            Ok(terms) => terms,
            Err(Error::InvalidChainData(_)) => return Err(Error::SessionNotFound(id)),
            Err(e) => return Err(e),
        };
        let filter = Filter::new()
            .address(self.addresses().job_marketplace)
            .topic0(ValueOrArray::Array(vec![
                Some(SessionClosedFilter::signature()),
                Some(SessionExpiredFilter::signature()),
            ]))
            .topic1(topic(id))
            .from_block(block);
        let ended: JobMarketplaceEvents = self.first_log(id, "final", filter).await?;
        let (status, settled_tokens, refund) = match ended {
            JobMarketplaceEvents::SessionClosedFilter(e) => {
                (SessionStatus::Closed, e.tokens, e.refund)
            }
            JobMarketplaceEvents::SessionExpiredFilter(e) => {
                (SessionStatus::Expired, e.tokens, e.refund)
            }
            other => {
                return Err(Error::InvalidChainData(format!(
                    "session {id}: unexpected final event {other:?}"
                )));
            }
        };
        // What was deposited in all: the settled cost plus the refund.
        let total = U256::from(settled_tokens) * terms.price_per_token + refund;
        Ok(SessionView {
            id,
            status,
            close_by: 0,
            topped_up: total.saturating_sub(terms.deposit),
            terms,
            settled_tokens,
        })
    }

    /// The terms emitted in the session's SessionOpened event.
    async fn opened_terms(&self, id: SessionId) -> Result<SessionTerms> {
        let block = posted_block(id);
        let filter = Filter::new()
            .address(self.addresses().job_marketplace)
            .topic0(SessionOpenedFilter::signature())
            .topic1(topic(id))
            .from_block(block)
            .to_block(block);
        let event: SessionOpenedFilter = self.first_log(id, "SessionOpened", filter).await?;
        Ok(event.terms)
    }
}

fn topic(id: SessionId) -> H256 {
    H256::from_slice(&id.to_u256().encode())
}
