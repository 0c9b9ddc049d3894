//! [`TestHost`]: a scripted host, or faults over another service, and its builder.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use dashmap::DashMap;
use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::cid::Cid;
use fabstir_core::node::{NodeCapabilities, TokenPrice};
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    CapabilitiesResponse, FinishReason, NegotiationRequest, NegotiationResponse, PromptFrame,
    Quote, RejectReason, SessionEnding, SessionPrompt, StreamDone, StreamError, StreamErrorCode,
};
use fabstir_core::{JobId, ModelId, NodeInfo, SessionId, TokenAmount};
use libp2p::PeerId;

use super::script::{self, Pacing, Script};
use crate::codec::ResultResponse;
use crate::service::{ClientProof, HostService, SessionGrant, StreamSink};
use crate::{node_peer_id, sign_capabilities};

/// The chain id a test host signs for unless told otherwise (anvil's).
pub const TEST_CHAIN_ID: u64 = 31_337;

/// What a faulty host does.
#[derive(Clone)]
#[non_exhaustive]
pub enum Fault {
    /// Its capabilities carry an identity signature by another key than the one they name.
    ForgedCapabilities,
    /// It never answers a capabilities request (a fake provider that only costs its prober
    /// time).
    SilentCapabilities,
    /// Right after it answers a quote while `armed` is set, it clears `armed` and calls
    /// `crash`: the moment a host process dies before claiming the job it quoted for. Share one
    /// `armed` among hosts so that only the first to quote crashes; what dying means (stopping
    /// the node's claims, taking its network down) is `crash`'s.
    CrashAfterQuote {
        /// Set while the crash is still to come.
        armed: Arc<AtomicBool>,
        /// Called once, when the host crashes.
        crash: Arc<dyn Fn() + Send + Sync>,
    },
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::ForgedCapabilities => f.write_str("ForgedCapabilities"),
            Fault::SilentCapabilities => f.write_str("SilentCapabilities"),
            Fault::CrashAfterQuote { armed, .. } => f
                .debug_struct("CrashAfterQuote")
                .field("armed", &armed.load(Ordering::SeqCst))
                .finish_non_exhaustive(),
        }
    }
}

/// A scripted host's own decisions.
struct Scripted {
    key: SigningKey,
    peer: PeerId,
    models: Vec<ModelId>,
    price: u64,
    script: Script,
    pacing: Pacing,
    /// Job -> its client.
    jobs: DashMap<JobId, Address>,
    /// Sessions it serves.
    sessions: DashMap<SessionId, sessions::ScriptedSession>,
    /// (job, CID) -> the result, served to the job's client ([`TestHost::allow`]).
    results: HashMap<(JobId, Cid), Vec<u8>>,
}

/// Who decides what the host answers.
enum Decider {
    Script(Box<Scripted>),
    Inner(Arc<dyn HostService>),
}

/// Settings of a [`TestHost`]; [`TestHostBuilder::build`] makes it.
pub struct TestHostBuilder {
    decider: Decider,
    chain_id: u64,
    faults: Vec<Fault>,
}

impl fmt::Debug for TestHostBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHostBuilder")
            .field("chain_id", &self.chain_id)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl TestHostBuilder {
    /// Applies `set` to a scripted host's settings; a wrapping host has none.
    fn scripted(mut self, set: impl FnOnce(&mut Scripted)) -> Self {
        if let Decider::Script(s) = &mut self.decider {
            set(s);
        }
        self
    }

    /// The chain its signatures are for (default [`TEST_CHAIN_ID`]).
    pub fn chain_id(mut self, chain_id: u64) -> Self {
        self.chain_id = chain_id;
        self
    }

    /// The models a scripted host serves and quotes for (default none). Ignored when wrapping.
    pub fn models(self, models: Vec<ModelId>) -> Self {
        self.scripted(|s| s.models = models)
    }

    /// A scripted host's price per token in base units, in its capabilities and quotes; it
    /// declines offers below it as too low (default 1). Ignored when wrapping.
    pub fn price(self, price: u64) -> Self {
        self.scripted(|s| s.price = price)
    }

    /// What a scripted host streams (default [`Script::FromPrompt`]). Ignored when wrapping.
    pub fn script(self, script: Script) -> Self {
        self.scripted(|s| s.script = script)
    }

    /// How fast a scripted host streams (default [`Pacing::YieldEvery`] 64 tokens). Ignored
    /// when wrapping.
    pub fn pacing(self, pacing: Pacing) -> Self {
        self.scripted(|s| s.pacing = pacing)
    }

    /// Lets `client` stream `job` from a scripted host (see [`TestHost::allow`]). Ignored when
    /// wrapping.
    pub fn job(self, job: JobId, client: Address) -> Self {
        self.scripted(|s| {
            s.jobs.insert(job, client);
        })
    }

    /// Lets `client` prompt `session` on a scripted host (see [`TestHost::open_session`]).
    /// Ignored when wrapping.
    pub fn session(self, session: SessionId, client: Address, covered: u64) -> Self {
        self.scripted(|s| {
            s.sessions
                .insert(session, sessions::ScriptedSession::new(client, covered));
        })
    }

    /// A result of `job` a scripted host serves under `cid` on `/fabstir/result/1.0.0`, to the
    /// job's client (see [`TestHost::allow`]). Ignored when wrapping.
    pub fn result(self, job: JobId, cid: Cid, bytes: &[u8]) -> Self {
        self.scripted(|s| {
            s.results.insert((job, cid), bytes.to_vec());
        })
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// The host.
    pub fn build(self) -> TestHost {
        TestHost {
            decider: self.decider,
            chain_id: self.chain_id,
            faults: self.faults,
            cancelled: AtomicU64::new(0),
            produced: AtomicU64::new(0),
            settled: DashMap::new(),
        }
    }
}

/// A host for tests: scripted, or faults over another service. See the [module](crate::testing).
pub struct TestHost {
    decider: Decider,
    chain_id: u64,
    faults: Vec<Fault>,
    cancelled: AtomicU64,
    produced: AtomicU64,
    /// The receipt each job was settled with (`None`: the client signed nothing).
    settled: DashMap<JobId, Option<SignedReceipt>>,
}

impl fmt::Debug for TestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHost")
            .field("address", &self.address())
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// A scripted host signing with `key` as the node `peer`: it serves no model at a price of
    /// 1 until told otherwise, lets no job be streamed, quotes at most 1,000 tokens, accepts
    /// every posted job.
    pub fn builder(key: SigningKey, peer: PeerId) -> TestHostBuilder {
        TestHostBuilder {
            decider: Decider::Script(Box::new(Scripted {
                key,
                peer,
                models: Vec::new(),
                price: 1,
                script: Script::default(),
                pacing: Pacing::default(),
                jobs: DashMap::new(),
                sessions: DashMap::new(),
                results: HashMap::new(),
            })),
            chain_id: TEST_CHAIN_ID,
            faults: Vec::new(),
        }
    }

    /// A host that answers as `inner` does, but for its faults.
    pub fn wrapping(inner: Arc<dyn HostService>) -> TestHostBuilder {
        TestHostBuilder {
            decider: Decider::Inner(inner),
            chain_id: TEST_CHAIN_ID,
            faults: Vec::new(),
        }
    }

    fn scripted(&self) -> Option<&Scripted> {
        match &self.decider {
            Decider::Script(s) => Some(s),
            Decider::Inner(_) => None,
        }
    }

    /// The models a scripted host serves (none of its own when wrapping).
    pub fn models(&self) -> &[ModelId] {
        self.scripted().map_or(&[], |s| &s.models)
    }

    /// Lets `client` stream `job` from a scripted host; a wrapping host's inner service
    /// decides that itself, so there it does nothing.
    pub fn allow(&self, job: JobId, client: Address) {
        if let Some(s) = self.scripted() {
            s.jobs.insert(job, client);
        }
    }

    /// The registry entry that makes a scripted host verifiable (active, its models); `None`
    /// when wrapping.
    pub fn registry_entry(&self) -> Option<NodeInfo> {
        let s = self.scripted()?;
        Some(NodeInfo {
            address: auth::address_of(&s.key),
            peer_id: node_peer_id(&s.peer).ok()?,
            models: s.models.clone(),
            prices: vec![TokenPrice {
                token: Address::zero(),
                price_per_token: TokenAmount::from_base_units(s.price),
            }],
            metadata: String::new(),
            stake: TokenAmount::default(),
            active: true,
        })
    }

    /// Runs of a scripted host that stopped because the client cancelled or left.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// How a scripted host settled `job`: `Some(None)` with no receipt, `None` if it has not
    /// settled it.
    pub fn settled(&self, job: JobId) -> Option<Option<SignedReceipt>> {
        self.settled.get(&job).map(|r| r.clone())
    }

    /// Tokens a scripted host produced over all its runs.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::SeqCst)
    }

    fn crash_after_quote(&self) {
        for fault in &self.faults {
            if let Fault::CrashAfterQuote { armed, crash } = fault
                && armed.swap(false, Ordering::SeqCst)
            {
                crash();
            }
        }
    }

    async fn scripted_run(
        &self,
        s: &Scripted,
        job: JobId,
        prompt: &PromptFrame,
        sink: StreamSink,
    ) -> Result<StreamDone, StreamError> {
        let sent = script::stream(s.script, s.pacing, prompt, &sink, &self.produced).await;
        let (tokens, digest) = sent.inspect_err(|e| {
            if e.code == StreamErrorCode::Cancelled {
                self.cancelled.fetch_add(1, Ordering::SeqCst);
            }
        })?;
        // What the client recomputes from the text it received.
        let cid = fabstir_core::cid::cid_of_digest(digest);
        let message = auth::result_message(self.chain_id, job, &cid, tokens);
        let signature = auth::sign_message(&s.key, &message).map_err(|e| StreamError {
            code: StreamErrorCode::InferenceFailed,
            message: format!("signing the result: {e}"),
        })?;
        Ok(StreamDone {
            result_cid: cid,
            tokens_used: tokens,
            signature: signature.to_vec(),
        })
    }
}

/// The key that forges capabilities signatures.
fn forger() -> Option<SigningKey> {
    SigningKey::from_bytes(&[0xee; 32].into()).ok()
}

#[async_trait]
impl HostService for TestHost {
    fn address(&self) -> Address {
        match &self.decider {
            Decider::Script(s) => auth::address_of(&s.key),
            Decider::Inner(inner) => inner.address(),
        }
    }

    async fn capabilities(&self) -> CapabilitiesResponse {
        if self
            .faults
            .iter()
            .any(|f| matches!(f, Fault::SilentCapabilities))
        {
            std::future::pending::<()>().await;
        }
        let mut response = match &self.decider {
            Decider::Inner(inner) => inner.capabilities().await,
            Decider::Script(s) => {
                let caps = NodeCapabilities {
                    peer_id: node_peer_id(&s.peer).expect("a libp2p peer id converts"),
                    eth_address: Address::zero(),
                    models: s.models.clone(),
                    prices: vec![TokenPrice {
                        token: Address::zero(),
                        price_per_token: TokenAmount::from_base_units(s.price),
                    }],
                    max_tokens: 100_000,
                    current_load: 0,
                    max_concurrent: 4,
                    queue_depth: 0,
                    version: "test-host/0".into(),
                };
                sign_capabilities(&s.key, self.chain_id, caps)
                    .expect("a test host signs its own capabilities")
            }
        };
        if self
            .faults
            .iter()
            .any(|f| matches!(f, Fault::ForgedCapabilities))
            && let Some(other) = forger()
            && let Ok(forged) =
                sign_capabilities(&other, self.chain_id, response.capabilities.clone())
        {
            response.identity_signature = forged.identity_signature;
        }
        response
    }

    async fn job(&self, peer: PeerId, request: NegotiationRequest) -> NegotiationResponse {
        let quoting = matches!(request, NegotiationRequest::Quote(_));
        let answer = match &self.decider {
            Decider::Inner(inner) => inner.job(peer, request).await,
            Decider::Script(s) => match request {
                NegotiationRequest::Quote(q)
                    if s.models.contains(&q.model)
                        && q.offered_price_per_token < TokenAmount::from_base_units(s.price) =>
                {
                    NegotiationResponse::Rejected {
                        reason: RejectReason::PriceTooLow,
                        message: format!("price per token is {}", s.price),
                    }
                }
                NegotiationRequest::Quote(q) if s.models.contains(&q.model) => {
                    NegotiationResponse::Quote(Quote {
                        host: auth::address_of(&s.key),
                        model: q.model,
                        price_per_token: TokenAmount::from_base_units(s.price),
                        token: q.token,
                        max_tokens: q.max_tokens.min(1000),
                        valid_until: 4_000_000_000,
                        credit_window: crate::config::StreamConfig::default().credit_window,
                    })
                }
                NegotiationRequest::Quote(_) => NegotiationResponse::Rejected {
                    reason: RejectReason::UnknownModel,
                    message: "not served here".into(),
                },
                NegotiationRequest::Posted { job } => NegotiationResponse::Accepted { job },
            },
        };
        if quoting && matches!(answer, NegotiationResponse::Quote(_)) {
            self.crash_after_quote();
        }
        answer
    }

    async fn authorize(&self, job: JobId, proof: &ClientProof) -> Result<Address, StreamError> {
        let s = match &self.decider {
            Decider::Inner(inner) => return inner.authorize(job, proof).await,
            Decider::Script(s) => s,
        };
        match s.jobs.get(&job) {
            Some(owner) if proof.recovered == Some(*owner) => Ok(*owner),
            Some(_) => Err(StreamError {
                code: StreamErrorCode::AuthFailed,
                message: format!("not signed by the client of job {job}"),
            }),
            None => Err(StreamError {
                code: StreamErrorCode::UnknownJob,
                message: format!("no job {job}"),
            }),
        }
    }

    async fn run(
        &self,
        job: JobId,
        client: Address,
        prompt: PromptFrame,
        sink: StreamSink,
    ) -> Result<StreamDone, StreamError> {
        match &self.decider {
            Decider::Inner(inner) => inner.run(job, client, prompt, sink).await,
            Decider::Script(s) => self.scripted_run(s, job, &prompt, sink).await,
        }
    }

    async fn wallet_accepts(&self, wallet: Address, digest: H256, signature: &[u8]) -> bool {
        match &self.decider {
            Decider::Inner(inner) => inner.wallet_accepts(wallet, digest, signature).await,
            Decider::Script(_) => false,
        }
    }

    async fn settle(&self, job: JobId, receipt: Option<SignedReceipt>) {
        match &self.decider {
            Decider::Inner(inner) => inner.settle(job, receipt).await,
            Decider::Script(_) => {
                self.settled.insert(job, receipt);
            }
        }
    }

    async fn authorize_session(
        &self,
        session: SessionId,
        proof: &ClientProof,
    ) -> Result<SessionGrant, StreamError> {
        self.grant_session(session, proof).await
    }

    async fn run_session(
        &self,
        session: SessionId,
        prompt: SessionPrompt,
        budget: u64,
        sink: StreamSink,
    ) -> Result<FinishReason, StreamError> {
        sessions::forward_run(self, session, prompt, budget, sink).await
    }

    async fn end_session(&self, session: SessionId) -> Result<SessionEnding, StreamError> {
        match &self.decider {
            Decider::Inner(inner) => inner.end_session(session).await,
            Decider::Script(s) => self.scripted_end(s, session),
        }
    }

    async fn session_stream_ended(&self, session: SessionId, newest: Option<SignedReceipt>) {
        match &self.decider {
            Decider::Inner(inner) => inner.session_stream_ended(session, newest).await,
            Decider::Script(s) => self.scripted_stream_ended(s, session, newest),
        }
    }

    async fn result(&self, job: JobId, cid: &Cid, proof: &ClientProof) -> ResultResponse {
        match &self.decider {
            Decider::Inner(inner) => inner.result(job, cid, proof).await,
            Decider::Script(s) => {
                let client = s.jobs.get(&job).map(|c| *c);
                match client {
                    Some(client) if proof.is_from(client, self).await => s
                        .results
                        .get(&(job, *cid))
                        .cloned()
                        .map_or(ResultResponse::NotFound, ResultResponse::Found),
                    _ => ResultResponse::Refused,
                }
            }
        }
    }
}

mod sessions;
#[cfg(test)]
mod tests;
