//! [`FabstirSdk`]: the headless facade and the job lifecycle with failover.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use ethers::signers::{LocalWallet, Signer as _};
use fabstir_contracts::{ChainPeerRegistry, HeadlessContractManager, ManagerConfig};
use fabstir_core::primitives::Address;
use fabstir_core::{
    Deployment, DiscoveredNode, JobId, JobState, PaymentToken, ProviderQuery, TokenAmount,
};
use fabstir_p2p::{Keypair, Network, P2pConfig};
use fabstir_payments::{PaymentConfig, PaymentManager, TokenRegistry};
use tokio::sync::{Mutex, broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::job::{JobHandle, JobRequest};
use crate::lifecycle::Runner;
use crate::ports::{ChainLayer, NetworkLayer};
use crate::status::{JobStatusReport, status_from_chain};
use crate::{
    ChainClient, Error, P2pNetwork, Result, SdkConfig, SdkEvent, Session, SessionClosed,
    SessionRequest,
};

/// What every clone of the SDK and every running job shares.
pub(crate) struct Inner {
    pub(crate) config: SdkConfig,
    pub(crate) chain: Arc<dyn ChainLayer>,
    pub(crate) network: Arc<dyn NetworkLayer>,
    signer: RwLock<Option<Arc<LocalWallet>>>,
    jobs: DashMap<JobId, JobState>,
    pub(crate) events: broadcast::Sender<SdkEvent>,
    next_request: AtomicU64,
    pub(crate) recoveries: Mutex<JoinSet<()>>,
}

impl Inner {
    /// Records a tracked job's new state through the state machine; a job seen for the first
    /// time is recorded as it is.
    pub(crate) fn track(&self, job: JobId, to: JobState) {
        let mut entry = self.jobs.entry(job).or_insert(to);
        if *entry == to {
            return;
        }
        match entry.transition(to) {
            Ok(next) => *entry = next,
            Err(e) => tracing::error!(%job, error = %e, "job table"),
        }
    }
}

/// The headless SDK. Built with no signer: everything read-only works without one; spending
/// needs [`FabstirSdk::set_signer`]. The SDK never writes a key anywhere. Cheap to clone.
#[derive(Clone)]
pub struct FabstirSdk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FabstirSdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FabstirSdk")
            .field("chain_id", &self.inner.config.chain_id)
            .field("has_signer", &self.has_signer())
            .finish_non_exhaustive()
    }
}

impl FabstirSdk {
    /// An SDK over explicit layers (real or in-memory).
    pub fn with_layers(
        config: SdkConfig,
        chain: Arc<dyn ChainLayer>,
        network: Arc<dyn NetworkLayer>,
    ) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                config,
                chain,
                network,
                signer: RwLock::new(None),
                jobs: DashMap::new(),
                events,
                next_request: AtomicU64::new(1),
                recoveries: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// Connects the real layers: the chain at `config.rpc_url` with `deployment`, and a
    /// libp2p client node (fresh identity) bootstrapped from `config.bootstrap_peers`.
    pub async fn connect(config: SdkConfig, deployment: &Deployment) -> Result<Self> {
        // A client only dials out: it listens nowhere, so it never announces addresses that
        // other peers would try (and, once it is gone, fail) to reach.
        let p2p = P2pConfig {
            listen_addrs: Vec::new(),
            ..P2pConfig::default()
        };
        Self::connect_with(config, deployment, PaymentConfig::default(), p2p).await
    }

    /// [`Self::connect`] with explicit payment and network settings (listen addresses,
    /// stream limits); the chain id, marketplace, bootstrap peers, pool, TTL and timeouts
    /// still come from `config`.
    pub async fn connect_with(
        config: SdkConfig,
        deployment: &Deployment,
        payments: PaymentConfig,
        p2p: P2pConfig,
    ) -> Result<Self> {
        let manager = ManagerConfig {
            poll_interval: config.poll_interval,
        };
        let contracts =
            HeadlessContractManager::connect(&config.rpc_url, deployment, &manager).await?;
        let payments = PaymentManager::new(
            contracts.clone(),
            TokenRegistry::from_deployment(deployment),
            payments,
        );
        let p2p = config.p2p_config(p2p)?;
        let network = Network::spawn(
            p2p,
            Keypair::generate_ed25519(),
            Arc::new(ChainPeerRegistry::new(contracts)),
            None,
        )
        .await?;
        if !config.bootstrap_peers.is_empty()
            && let Err(e) = network.bootstrap().await
        {
            tracing::debug!(error = %e, "bootstrap");
        }
        Ok(Self::with_layers(
            config,
            Arc::new(ChainClient::new(payments, deployment.start_block)),
            Arc::new(P2pNetwork::new(network)),
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &SdkConfig {
        &self.inner.config
    }

    /// Sets (or replaces) the signer. A wallet still on the default chain id (1) is moved to
    /// the SDK's chain; one set for another chain is refused.
    pub fn set_signer(&self, wallet: LocalWallet) -> Result<()> {
        let chain = self.inner.config.chain_id;
        let wallet = match wallet.chain_id() {
            c if c == chain => wallet,
            1 => wallet.with_chain_id(chain),
            other => {
                return Err(Error::WrongChain {
                    signer: other,
                    sdk: chain,
                });
            }
        };
        *self.inner.signer.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(wallet));
        Ok(())
    }

    /// Forgets the signer.
    pub fn clear_signer(&self) {
        *self.inner.signer.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether a signer is set.
    pub fn has_signer(&self) -> bool {
        self.inner
            .signer
            .read()
            .map(|s| s.is_some())
            .unwrap_or(false)
    }

    /// The signer's address, if one is set.
    pub fn signer_address(&self) -> Option<Address> {
        self.signer().ok().map(|w| w.address())
    }

    fn signer(&self) -> Result<Arc<LocalWallet>> {
        self.inner
            .signer
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(Error::NoSigner)
    }

    /// SDK events (state changes, tokens, discoveries, payments, errors).
    pub fn events(&self) -> broadcast::Receiver<SdkEvent> {
        self.inner.events.subscribe()
    }

    /// The layers (for advanced use and tests).
    pub fn chain(&self) -> &Arc<dyn ChainLayer> {
        &self.inner.chain
    }

    /// The network's connection pool counters: connections open, uses that found one open
    /// (`hits`) or had to dial (`misses`), evictions. `None` when the network layer keeps no
    /// pool (the in-memory one).
    pub fn pool_stats(&self) -> Option<fabstir_p2p::PoolStats> {
        self.inner.network.pool_stats()
    }

    /// Verified providers for a query (no signer needed).
    pub async fn discover(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        let nodes = self.inner.network.find_providers(query).await?;
        for node in &nodes {
            let _ = self.inner.events.send(SdkEvent::NodeDiscovered {
                peer_id: node.capabilities.peer_id.clone(),
                address: node.capabilities.eth_address,
                model: query.model,
            });
        }
        Ok(nodes)
    }

    /// `owner`'s balance of a token by symbol or address (no signer needed).
    pub async fn balance(&self, owner: Address, token: &str) -> Result<TokenAmount> {
        let token = self.inner.chain.token(token)?;
        self.inner.chain.balance(owner, &token).await
    }

    /// What the marketplace owes `owner` in a token by symbol or address: a host's earnings
    /// and refunds it could not deliver (no signer needed).
    pub async fn credit(&self, owner: Address, token: &str) -> Result<TokenAmount> {
        let token = self.inner.chain.token(token)?;
        self.inner.chain.credit(owner, &token).await
    }

    /// Withdraws the signer's whole credit in a token (by symbol or address) to its own
    /// address; returns the amount (zero when nothing was owed: no transaction is sent).
    pub async fn withdraw_credit(&self, token: &str) -> Result<TokenAmount> {
        let wallet = self.signer()?;
        let token = self.inner.chain.token(token)?;
        self.inner
            .chain
            .withdraw_credit(&token, wallet.signer())
            .await
    }

    /// A payment token by symbol or address.
    pub fn token(&self, symbol_or_address: &str) -> Result<PaymentToken> {
        self.inner.chain.token(symbol_or_address)
    }

    /// A job's status, rebuilt from the chain (no signer needed).
    pub async fn job_status(&self, job: JobId) -> Result<JobStatusReport> {
        status_from_chain(self.inner.chain.as_ref(), job).await
    }

    /// Rebuilds a job's state from chain events after a restart and tracks it again.
    pub async fn recover_job(&self, job: JobId) -> Result<JobStatusReport> {
        let report = self.job_status(job).await?;
        // What the chain shows replaces what this instance remembered: an observation, not a
        // step of a machine this instance runs.
        self.inner.jobs.insert(job, report.state);
        Ok(report)
    }

    /// The state this SDK instance last recorded for a job it ran or recovered.
    pub fn tracked_state(&self, job: JobId) -> Option<JobState> {
        self.inner.jobs.get(&job).map(|s| *s)
    }

    /// Recovers the escrow of a job that will not complete: cancels it while unclaimed, or
    /// expires it once its deadline passed (waiting for the deadline). Needs the signer.
    pub async fn recover_funds(&self, job: JobId) -> Result<JobStatusReport> {
        let wallet = self.signer()?;
        crate::recovery::recover_escrow(&self.inner, job, wallet.signer()).await;
        self.job_status(job).await
    }

    /// Cancels an unclaimed job of the signer (full refund).
    pub async fn cancel(&self, job: JobId) -> Result<()> {
        let wallet = self.signer()?;
        self.inner.chain.cancel_job(job, wallet.signer()).await?;
        self.inner.track(job, JobState::Failed);
        Ok(())
    }

    /// Waits until every escrow recovery started by failovers has finished.
    pub async fn wait_recoveries(&self) {
        let mut set = self.inner.recoveries.lock().await;
        while set.join_next().await.is_some() {}
    }

    /// Opens a session (many prompts on one deposit): discovers and ranks hosts, asks the
    /// best for a quote, and opens the session on chain with `request.deposit`. Needs the
    /// signer, which then signs the session's receipts (held by the session, never stored).
    pub async fn open_session(&self, request: SessionRequest) -> Result<Session> {
        let wallet = self.signer()?;
        crate::session::open(self.inner.clone(), wallet, request).await
    }

    /// Every session the signer opened (since the deployment), open or finished.
    pub async fn sessions(&self) -> Result<Vec<fabstir_core::OnChainSession>> {
        let wallet = self.signer()?;
        self.inner.chain.sessions_of(wallet.address()).await
    }

    /// Closes one of the signer's sessions by id (one opened elsewhere, or before a restart):
    /// through its host when discovery finds it, which pays itself what was receipted and
    /// refunds the rest at once; otherwise through the chain (ask to close, expire after the
    /// close window) in the background.
    pub async fn close_session(&self, id: fabstir_core::SessionId) -> Result<SessionClosed> {
        let wallet = self.signer()?;
        crate::session::close_by_id(&self.inner, &wallet, id).await
    }

    /// Runs a job through the seed's lifecycle: discover, rank, quote (Negotiating), post and
    /// pay (Posted), host claims (Claimed), Processing/Streaming, Completed (text checked
    /// against the result CID), PaymentReleased (from JobCompleted). On a host failure the
    /// escrow is recovered and the next host is tried, up to `max_attempts`.
    pub async fn submit_job(&self, request: JobRequest) -> Result<JobHandle> {
        let wallet = self.signer()?;
        let token = self.inner.chain.token(&request.token)?;
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let (state_tx, state_rx) = watch::channel((JobState::Negotiating, None));
        let (token_tx, token_rx) = mpsc::channel(1024);
        let (result_tx, result_rx) = oneshot::channel();
        let cancel = CancellationToken::new();
        let runner = Runner {
            inner: self.inner.clone(),
            request: id,
            wallet,
            token,
            state: state_tx,
            tokens: token_tx,
            cancel: cancel.clone(),
        };
        tokio::spawn(async move {
            let result = runner.run(request).await;
            if let Err(e) = &result {
                let _ = runner.inner.events.send(SdkEvent::Error {
                    job: runner.state.borrow().1,
                    message: e.to_string(),
                });
            }
            let _ = result_tx.send(result);
        });
        Ok(JobHandle {
            request: id,
            state: state_rx,
            tokens: token_rx,
            result: result_rx,
            _guard: cancel.clone().drop_guard(),
            cancel,
        })
    }
}
