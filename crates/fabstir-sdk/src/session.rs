//! [`Session`]: many prompts on one deposit with one host. Opening discovers, ranks,
//! negotiates and pays once ([`open`]); each prompt is then one stream with no transaction
//! (`docs/PROTOCOL.md` section 9), its text delivered as it arrives, the client's receipts
//! cumulative over the session. [`Session::chat`] keeps the conversation and sends it whole
//! with each prompt, so when a host fails mid-session the SDK opens a session with another
//! host, replays the conversation there, and gets the failed session's unsettled deposit back
//! through the challenge close.

mod close;
mod open;

pub(crate) use close::close_by_id;
use close::{end, recover};

use std::sync::Arc;
use std::time::Duration;

use ethers::signers::LocalWallet;
use fabstir_core::wire::{ChatMessage, ChatRole, FinishReason, PromptInput, SessionPrompt};
use fabstir_core::{NodePeerId, PaymentToken, ScoreWeights, SessionEvent, SessionId, TokenAmount};
use futures::StreamExt;

use crate::network::WalletClientSigner;
use crate::sdk::Inner;
use crate::{Error, Result, SdkEvent};

/// A session to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// The model's name (its id is `keccak256(name)`).
    pub model: String,
    /// Payment token, by symbol (`USDC`, `ETH`) or address.
    pub token: String,
    /// What to deposit, in the token's base units: what the session can spend before a
    /// top-up. What is not spent comes back when the session closes.
    pub deposit: TokenAmount,
    /// Highest acceptable price per token, in base units.
    pub max_price: Option<TokenAmount>,
    /// Highest acceptable measured latency to the host.
    pub max_latency: Option<Duration>,
    /// Ranking weights.
    pub weights: ScoreWeights,
    /// How long the session stays open (its on-chain expiry).
    pub duration: Duration,
    /// Most tokens generated per prompt.
    pub max_tokens: u32,
    /// Sampling temperature x 1000 (0 is greedy).
    pub temperature_milli: u32,
    /// Top-p x 1000 (1000 disables it).
    pub top_p_milli: u32,
    /// Sampling seed.
    pub seed: u64,
}

impl SessionRequest {
    /// A session for `model` depositing `deposit` base units of USDC: an hour long, 128 tokens
    /// per prompt, greedy.
    pub fn new(model: impl Into<String>, deposit: TokenAmount) -> Self {
        Self {
            model: model.into(),
            token: "USDC".into(),
            deposit,
            max_price: None,
            max_latency: None,
            weights: ScoreWeights::default(),
            duration: Duration::from_secs(3_600),
            max_tokens: 128,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 1,
        }
    }

    /// Sets the payment token (`USDC`, `ETH`, or an address).
    pub fn pay_with(mut self, token: impl Into<String>) -> Self {
        self.token = token.into();
        self
    }

    /// Sets the most tokens generated per prompt.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }
}

/// What one prompt returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptReply {
    /// The generated text.
    pub text: String,
    /// Tokens delivered.
    pub tokens: u64,
    /// Tokens with text: what the prompt cost.
    pub counted: u64,
    /// Why it ended ([`FinishReason::Deposit`]: top the session up to go on).
    pub finish: FinishReason,
    /// The session that answered (another one than before after a failover).
    pub session: SessionId,
    /// What this prompt cost, in the token's base units.
    pub cost: TokenAmount,
    /// What the handle has spent so far over all its sessions.
    pub spent: TokenAmount,
    /// Hosts that failed during this prompt (each replaced by a new session).
    pub failovers: u32,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClosed {
    /// The session.
    pub session: SessionId,
    /// Tokens the host was paid for (settled on chain).
    pub tokens: u64,
    /// What the session cost (tokens x price); the rest of the deposit is refunded.
    pub cost: TokenAmount,
    /// Whether the host closed it at once (`false`: it did not answer or was not found, so the
    /// session is closing through the chain and its deposit comes back after the close
    /// window; `tokens` and `cost` are then what was settled so far).
    pub cooperative: bool,
}

/// The session a [`Session`] uses now.
#[derive(Debug, Clone)]
struct Current {
    id: SessionId,
    host: NodePeerId,
    price: TokenAmount,
    deposit: TokenAmount,
    /// Counted tokens receipted over this session.
    receipted: u64,
}

impl Current {
    fn spent(&self) -> TokenAmount {
        cost(self.price, self.receipted)
    }
}

fn cost(price: TokenAmount, tokens: u64) -> TokenAmount {
    TokenAmount(price.base_units().saturating_mul(tokens.into()))
}

/// An open session: prompt it, chat on it, top it up, close it. Receipts are signed with the
/// signer the SDK had when it was opened, held for the session only.
pub struct Session {
    inner: Arc<Inner>,
    wallet: Arc<LocalWallet>,
    request: SessionRequest,
    token: PaymentToken,
    current: Current,
    /// Hosts that failed this handle.
    excluded: Vec<NodePeerId>,
    /// What earlier sessions of this handle spent (their hosts failed).
    spent_before: TokenAmount,
    messages: Vec<ChatMessage>,
    prompts: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("current", &self.current)
            .field("token", &self.token.symbol)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session's id on chain (a new one after a failover).
    pub fn id(&self) -> SessionId {
        self.current.id
    }

    /// The host serving it.
    pub fn host(&self) -> &NodePeerId {
        &self.current.host
    }

    /// The price per counted token, in base units.
    pub fn price_per_token(&self) -> TokenAmount {
        self.current.price
    }

    /// The payment token.
    pub fn token(&self) -> &PaymentToken {
        &self.token
    }

    /// What the session holds: its deposit and top-ups.
    pub fn deposit(&self) -> TokenAmount {
        self.current.deposit
    }

    /// Counted tokens receipted on the current session.
    pub fn tokens_receipted(&self) -> u64 {
        self.current.receipted
    }

    /// What the handle has spent so far, over all its sessions, in base units.
    pub fn spent(&self) -> TokenAmount {
        TokenAmount(
            self.spent_before
                .base_units()
                .saturating_add(self.current.spent().base_units()),
        )
    }

    /// The conversation so far ([`Session::chat`]'s messages and answers).
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Continues `text` as it is (no chat template, no conversation).
    pub async fn prompt(&mut self, text: &str) -> Result<PromptReply> {
        self.prompt_with(text, |_| {}).await
    }

    /// [`Session::prompt`], handing each piece of text to `on_text` as it arrives.
    pub async fn prompt_with(
        &mut self,
        text: &str,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<PromptReply> {
        self.run(PromptInput::Text(text.to_owned()), &mut on_text)
            .await
    }

    /// Says `text` as the user: the host answers the whole conversation with the model's chat
    /// template, and the answer joins the conversation.
    pub async fn chat(&mut self, text: &str) -> Result<PromptReply> {
        self.chat_with(text, |_| {}).await
    }

    /// [`Session::chat`], handing each piece of the answer to `on_text` as it arrives.
    pub async fn chat_with(
        &mut self,
        text: &str,
        mut on_text: impl FnMut(&str) + Send,
    ) -> Result<PromptReply> {
        let mut messages = self.messages.clone();
        messages.push(ChatMessage::new(ChatRole::User, text));
        let reply = self
            .run(PromptInput::Chat(messages.clone()), &mut on_text)
            .await?;
        messages.push(ChatMessage::new(ChatRole::Assistant, reply.text.trim()));
        self.messages = messages;
        Ok(reply)
    }

    /// Adds `amount` (base units) to the session's deposit.
    pub async fn top_up(&mut self, amount: TokenAmount) -> Result<()> {
        self.inner
            .chain
            .top_up_session(self.current.id, amount, self.wallet.signer())
            .await?;
        self.current.deposit = TokenAmount(
            self.current
                .deposit
                .base_units()
                .saturating_add(amount.base_units()),
        );
        Ok(())
    }

    /// Ends the session: the host closes it on chain with the newest receipt, paying itself
    /// for what was receipted and refunding the rest at once. A host that does not answer is
    /// closed through the chain (ask to close, expire after the close window) in the
    /// background.
    pub async fn close(self) -> Result<SessionClosed> {
        end(
            &self.inner,
            &self.wallet,
            self.current.id,
            Some(&self.current.host),
        )
        .await
    }

    /// Runs one prompt, failing over to a new session with another host when the host fails.
    async fn run(
        &mut self,
        input: PromptInput,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<PromptReply> {
        let prompt = SessionPrompt {
            input,
            max_tokens: self.request.max_tokens,
            temperature_milli: self.request.temperature_milli,
            top_p_milli: self.request.top_p_milli,
            seed: self.request.seed,
        };
        self.prompts += 1;
        let mut failovers = 0;
        loop {
            match self.stream(prompt.clone(), on_text).await {
                Ok(mut reply) => {
                    reply.failovers = failovers;
                    return Ok(reply);
                }
                Err(e) if is_host_fault(&e) && failovers < self.inner.config.max_attempts => {
                    failovers += 1;
                    self.fail_over(e).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Streams `prompt` on the current session.
    async fn stream(
        &mut self,
        prompt: SessionPrompt,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<PromptReply> {
        let signer = Arc::new(WalletClientSigner(self.wallet.clone()));
        let session = self.current.id;
        let mut events = self
            .inner
            .network
            .open_session_stream(&self.current.host, session, signer, prompt)
            .await?;
        let mut text = String::new();
        while let Some(event) = events.next().await {
            match event? {
                SessionEvent::Tokens(batch) => {
                    let piece = batch.text();
                    on_text(&piece);
                    let _ = self.inner.events.send(SdkEvent::SessionTokens {
                        session,
                        prompt: self.prompts,
                        text: piece.clone(),
                    });
                    text.push_str(&piece);
                }
                SessionEvent::Done(end) => {
                    let before = self.current.spent();
                    self.current.receipted = self.current.receipted.max(end.receipted);
                    let spent_now = self.current.spent();
                    let reply = PromptReply {
                        text,
                        tokens: end.tokens,
                        counted: end.counted,
                        finish: end.finish,
                        session,
                        cost: TokenAmount(
                            spent_now.base_units().saturating_sub(before.base_units()),
                        ),
                        spent: self.spent(),
                        failovers: 0,
                    };
                    let _ = self.inner.events.send(SdkEvent::SessionPromptDone {
                        session,
                        prompt: self.prompts,
                        tokens: end.counted,
                        spent: reply.spent,
                    });
                    return Ok(reply);
                }
            }
        }
        Err(Error::P2p(fabstir_p2p::Error::Truncated(
            "the prompt's stream ended before its end".into(),
        )))
    }

    /// Replaces the failed session with a new one with another host; the failed session's
    /// deposit comes back through the challenge close in the background.
    async fn fail_over(&mut self, reason: Error) -> Result<()> {
        let failed = self.current.clone();
        self.inner.network.record_outcome(&failed.host, false);
        self.excluded.push(failed.host.clone());
        self.spent_before = TokenAmount(
            self.spent_before
                .base_units()
                .saturating_add(failed.spent().base_units()),
        );
        recover(&self.inner, &self.wallet, failed.id).await;
        let reason = reason.to_string();
        tracing::warn!(session = %failed.id, host = %failed.host, %reason, "session failing over");
        let _ = self.inner.events.send(SdkEvent::SessionFailover {
            failed_session: failed.id,
            host: failed.host,
            reason,
        });
        self.current = open::open_current(
            &self.inner,
            &self.wallet,
            &self.request,
            &self.token,
            &self.excluded,
        )
        .await?;
        Ok(())
    }
}

/// Whether a prompt's error is the host's (another host may serve it) rather than the
/// client's own (its signer, its funds).
fn is_host_fault(e: &Error) -> bool {
    match e {
        Error::P2p(fabstir_p2p::Error::Signer(_) | fabstir_p2p::Error::Shutdown) => false,
        Error::P2p(_) => true,
        _ => false,
    }
}

/// Opens a session for `request` with the best ranked host (see [`crate::FabstirSdk::open_session`]).
pub(crate) async fn open(
    inner: Arc<Inner>,
    wallet: Arc<LocalWallet>,
    request: SessionRequest,
) -> Result<Session> {
    let token = inner.chain.token(&request.token)?;
    let current = open::open_current(&inner, &wallet, &request, &token, &[]).await?;
    Ok(Session {
        inner,
        wallet,
        request,
        token,
        current,
        excluded: Vec::new(),
        spent_before: TokenAmount::default(),
        messages: Vec::new(),
        prompts: 0,
    })
}
