//! Sessions this host serves: a prompt is authorized against the session as the chain holds
//! it (open with this host, for a served model, before its expiry, the client's proof) and one
//! prompt streams at a time; the newest receipt is kept between prompts. The host settles part
//! of a session once enough is receipted since its last settlement, and closes it with the
//! newest receipt when the client asks, when the client has been idle too long (it may have
//! gone), or shortly before the session expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fabstir_core::clock::unix_now;
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    FinishReason, PromptInput, SessionEnding, SessionPrompt, StreamError, StreamErrorCode,
    plain_chat_template,
};
use fabstir_core::{OnChainSession, SessionId, SessionStatus};
use fabstir_inference::GenerateRequest;
use fabstir_p2p::{ClientProof, SessionGrant, StreamSink};

use super::Host;
use super::stream::milli;

/// How long before a session's expiry the host closes it, to be paid in time.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How long a new prompt waits for the session's previous one to end (its final receipt may
/// still be on the way when the client sends the next prompt).
const BUSY_WAIT: Duration = Duration::from_secs(2);

/// A session this host serves.
pub(crate) struct ServedSession {
    /// As the chain held it when last read.
    session: OnChainSession,
    /// The client's newest receipt, checked by the network layer.
    newest: Option<SignedReceipt>,
    /// Tokens settled on chain so far.
    settled: u64,
    /// A prompt is streaming.
    busy: bool,
    /// The host started closing it.
    closing: bool,
    /// When the last prompt ended (or the session was first served).
    last_active: Instant,
    /// Notified when a prompt ends.
    released: Arc<tokio::sync::Notify>,
}

impl ServedSession {
    fn receipted(&self) -> u64 {
        self.newest.as_ref().map_or(0, |r| r.tokens)
    }

    fn available(&self) -> u64 {
        self.session
            .covered_tokens()
            .saturating_sub(self.receipted())
    }
}

fn refused(code: StreamErrorCode, message: impl Into<String>) -> StreamError {
    StreamError {
        code,
        message: message.into(),
    }
}

impl Host {
    /// Reads `id` from the chain: open, with this host, for a model served here.
    async fn read_session(&self, id: SessionId) -> Result<OnChainSession, StreamError> {
        let session = self.contracts.session(id).await.map_err(|e| match e {
            fabstir_contracts::Error::SessionNotFound(_) => refused(
                StreamErrorCode::UnknownJob,
                format!("session {id} not found"),
            ),
            _ => refused(StreamErrorCode::Unavailable, "the chain cannot be read"),
        })?;
        if session.details.host != self.address || !self.models.contains_key(&session.details.model)
        {
            return Err(refused(
                StreamErrorCode::UnknownJob,
                format!("session {id} is not served here"),
            ));
        }
        Ok(session)
    }

    /// Lets the client that answered with `proof` prompt `id` once: see the module docs.
    pub(super) async fn authorize_session(
        self: &Arc<Self>,
        id: SessionId,
        proof: &ClientProof,
    ) -> Result<SessionGrant, StreamError> {
        if self.is_stopping() {
            return Err(refused(StreamErrorCode::Unavailable, "shutting down"));
        }
        let slot = match self.sessions.get(&id).map(|e| e.clone()) {
            Some(slot) => slot,
            None => {
                let session = self.read_session(id).await?;
                let fresh = Arc::new(tokio::sync::Mutex::new(ServedSession {
                    settled: session.settled_tokens,
                    session,
                    newest: None,
                    busy: false,
                    closing: false,
                    last_active: Instant::now(),
                    released: Arc::default(),
                }));
                let slot = self.sessions.entry(id).or_insert(fresh).clone();
                self.watch_session(id, slot.clone());
                slot
            }
        };
        let mut served = slot.lock().await;
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        while served.busy {
            let released = served.released.clone();
            let notified = released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            drop(served);
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(refused(
                    StreamErrorCode::SessionBusy,
                    format!("another prompt of session {id} is streaming"),
                ));
            }
            served = slot.lock().await;
        }
        let client = served.session.client;
        if !(proof.recovered == Some(client)
            || self
                .wallet_accepts(client, proof.digest, &proof.signature)
                .await)
        {
            return Err(refused(
                StreamErrorCode::AuthFailed,
                format!("not the client of session {id}"),
            ));
        }
        if served.closing || served.session.status != SessionStatus::Open {
            return Err(refused(
                StreamErrorCode::JobClosed,
                format!("session {id} is closing"),
            ));
        }
        if served.session.details.expiry < unix_now() + EXPIRY_MARGIN.as_secs() {
            return Err(refused(
                StreamErrorCode::JobClosed,
                format!("session {id} expires"),
            ));
        }
        // A deposit that may not pay for a whole answer is read again: the client may have
        // topped it up.
        if served.available() < u64::from(self.limits.max_tokens) {
            let session = self.read_session(id).await?;
            if session.status != SessionStatus::Open {
                return Err(refused(
                    StreamErrorCode::JobClosed,
                    format!("session {id} is {}", session.status),
                ));
            }
            served.session = session;
        }
        served.busy = true;
        Ok(SessionGrant {
            client,
            resume: served.newest.clone(),
            available_tokens: served.available(),
        })
    }

    /// Generates one prompt of an authorized session: at most `budget` tokens.
    pub(super) async fn run_session(
        &self,
        id: SessionId,
        prompt: SessionPrompt,
        budget: u64,
        sink: StreamSink,
    ) -> Result<FinishReason, StreamError> {
        let model = match self.sessions.get(&id).map(|e| e.clone()) {
            Some(slot) => slot.lock().await.session.details.model,
            None => return Err(refused(StreamErrorCode::UnknownJob, "session not served")),
        };
        let text = match &prompt.input {
            PromptInput::Text(text) => text.clone(),
            PromptInput::Chat(messages) => plain_chat_template(messages),
        };
        let wanted = prompt.max_tokens.min(self.limits.max_tokens);
        let max_tokens = u32::try_from(budget).unwrap_or(u32::MAX).min(wanted);
        let request = GenerateRequest {
            prompt: text,
            max_tokens,
            temperature: milli(prompt.temperature_milli),
            top_p: milli(prompt.top_p_milli),
            seed: prompt.seed,
            ..GenerateRequest::default()
        };
        let generated = self.run_generation(&model, request, &sink).await?;
        self.metrics.tokens_generated.inc_by(generated.tokens);
        Ok(if generated.tokens < u64::from(max_tokens) {
            FinishReason::Stop
        } else if max_tokens < wanted {
            FinishReason::Deposit
        } else {
            FinishReason::Length
        })
    }

    /// A prompt stream of `id` ended with `newest`: keeps it, and settles part of the session
    /// once enough is receipted.
    pub(super) async fn session_stream_ended(
        self: &Arc<Self>,
        id: SessionId,
        newest: Option<SignedReceipt>,
    ) {
        let Some(slot) = self.sessions.get(&id).map(|e| e.clone()) else {
            return;
        };
        let mut served = slot.lock().await;
        served.busy = false;
        served.last_active = Instant::now();
        served.released.notify_waiters();
        if let Some(receipt) = newest
            && receipt.tokens > served.receipted()
        {
            served.newest = Some(receipt);
        }
        let due = served.receipted() >= served.settled + self.limits.session_settle_every;
        if due && !served.closing && !self.is_stopping() {
            let receipt = served.newest.clone();
            served.settled = served.receipted();
            let host = self.clone();
            tokio::spawn(async move {
                let Some(receipt) = receipt else { return };
                match host
                    .contracts
                    .settle_session(id, &receipt, &host.sender)
                    .await
                {
                    Ok(settled) => {
                        tracing::info!(session = %id, tokens = settled.tokens, paid = %settled.paid.base_units(), "session settled")
                    }
                    Err(e) => {
                        host.metrics.errors.inc();
                        tracing::error!(session = %id, error = %e, "settling the session failed");
                    }
                }
            });
        }
    }

    /// The client asked to end `id`: closes it with the newest receipt, in the background.
    pub(super) async fn end_session(
        self: &Arc<Self>,
        id: SessionId,
    ) -> Result<SessionEnding, StreamError> {
        let Some(slot) = self.sessions.get(&id).map(|e| e.clone()) else {
            return Err(refused(StreamErrorCode::UnknownJob, "session not served"));
        };
        let mut served = slot.lock().await;
        let tokens = served.receipted();
        self.start_closing(id, &mut served);
        Ok(SessionEnding { tokens })
    }

    /// Closes `id` on chain with the newest receipt (once), in the background.
    fn start_closing(self: &Arc<Self>, id: SessionId, served: &mut ServedSession) {
        if served.closing {
            return;
        }
        served.closing = true;
        let receipt = served.newest.clone();
        let host = self.clone();
        tokio::spawn(async move {
            match host
                .contracts
                .close_session(id, receipt.as_ref(), &host.sender)
                .await
            {
                Ok(closed) => {
                    host.metrics.jobs_completed.inc();
                    tracing::info!(session = %id, tokens = closed.settlement.tokens, paid = %closed.settlement.paid.base_units(), refund = %closed.settlement.refund.base_units(), "session closed");
                }
                Err(e) => {
                    host.metrics.errors.inc();
                    tracing::error!(session = %id, error = %e, "closing the session failed");
                }
            }
            host.sessions.remove(&id);
        });
    }

    /// Closes `id` once its client has been idle for the configured time, or shortly before
    /// it expires, whichever comes first; stops watching once it is closing or the host stops.
    fn watch_session(
        self: &Arc<Self>,
        id: SessionId,
        slot: Arc<tokio::sync::Mutex<ServedSession>>,
    ) {
        let host = Arc::downgrade(self);
        let idle = self.limits.session_idle;
        tokio::spawn(async move {
            loop {
                let Some(host) = host.upgrade() else { return };
                let wait = {
                    let mut served = slot.lock().await;
                    if served.closing || host.is_stopping() {
                        return;
                    }
                    let expires_in = served
                        .session
                        .details
                        .expiry
                        .saturating_sub(EXPIRY_MARGIN.as_secs())
                        .saturating_sub(unix_now());
                    let idle_left = idle.saturating_sub(served.last_active.elapsed());
                    if !served.busy && (expires_in == 0 || idle_left.is_zero()) {
                        host.start_closing(id, &mut served);
                        return;
                    }
                    idle_left
                        .min(Duration::from_secs(expires_in))
                        .max(Duration::from_millis(100))
                };
                drop(host);
                tokio::time::sleep(wait).await;
            }
        });
    }
}
