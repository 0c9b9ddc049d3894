//! A scripted [`TestHost`]'s sessions: the sessions it was told of (their client and how many
//! counted tokens the deposit pays for), one prompt at a time, the newest receipt kept between
//! prompts, and the client's request to end one recorded. A wrapping host forwards all of it.

use fabstir_core::SessionId;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    FinishReason, PromptFrame, PromptInput, SessionEnding, SessionPrompt, StreamError,
    StreamErrorCode,
};

use super::{Decider, Scripted, TestHost};
use crate::service::{ClientProof, SessionGrant, StreamSink};
use crate::testing::script;

/// A session a scripted host serves.
#[derive(Debug, Clone)]
pub(super) struct ScriptedSession {
    client: Address,
    /// Counted tokens the deposit pays for in all.
    covered: u64,
    newest: Option<SignedReceipt>,
    busy: bool,
    ended: bool,
}

impl ScriptedSession {
    pub(super) fn new(client: Address, covered: u64) -> Self {
        Self {
            client,
            covered,
            newest: None,
            busy: false,
            ended: false,
        }
    }
}

fn refused(code: StreamErrorCode, message: String) -> StreamError {
    StreamError { code, message }
}

impl TestHost {
    /// Lets `client` prompt `session` on a scripted host, its deposit paying for `covered`
    /// counted tokens; a wrapping host's inner service decides that itself.
    pub fn open_session(&self, session: SessionId, client: Address, covered: u64) {
        if let Some(s) = self.scripted() {
            s.sessions
                .insert(session, ScriptedSession::new(client, covered));
        }
    }

    /// The newest receipt a scripted host holds for `session`.
    pub fn session_receipt(&self, session: SessionId) -> Option<SignedReceipt> {
        let s = self.scripted()?;
        s.sessions.get(&session)?.newest.clone()
    }

    /// Whether the client asked a scripted host to end `session`.
    pub fn session_ended(&self, session: SessionId) -> bool {
        self.scripted()
            .and_then(|s| s.sessions.get(&session).map(|e| e.ended))
            .unwrap_or(false)
    }

    pub(super) async fn grant_session(
        &self,
        session: SessionId,
        proof: &ClientProof,
    ) -> Result<SessionGrant, StreamError> {
        let s = match &self.decider {
            Decider::Inner(inner) => return inner.authorize_session(session, proof).await,
            Decider::Script(s) => s,
        };
        let mut entry = s
            .sessions
            .get_mut(&session)
            .ok_or_else(|| refused(StreamErrorCode::UnknownJob, format!("no session {session}")))?;
        if proof.recovered != Some(entry.client) {
            return Err(refused(
                StreamErrorCode::AuthFailed,
                format!("not signed by the client of session {session}"),
            ));
        }
        if entry.ended {
            return Err(refused(
                StreamErrorCode::JobClosed,
                format!("session {session} ended"),
            ));
        }
        if entry.busy {
            return Err(refused(
                StreamErrorCode::SessionBusy,
                format!("session {session} is streaming"),
            ));
        }
        entry.busy = true;
        let receipted = entry.newest.as_ref().map_or(0, |r| r.tokens);
        Ok(SessionGrant {
            client: entry.client,
            resume: entry.newest.clone(),
            available_tokens: entry.covered.saturating_sub(receipted),
        })
    }

    pub(super) async fn scripted_session_run(
        &self,
        s: &Scripted,
        prompt: SessionPrompt,
        budget: u64,
        sink: StreamSink,
    ) -> Result<FinishReason, StreamError> {
        // The script reads the text, or the conversation's last message.
        let text = match prompt.input {
            PromptInput::Text(text) => text,
            PromptInput::Chat(messages) => messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default(),
        };
        let frame = PromptFrame {
            prompt: text,
            temperature_milli: prompt.temperature_milli,
            top_p_milli: prompt.top_p_milli,
            seed: prompt.seed,
        };
        let planned = s.script.planned(&frame)?;
        let max_tokens = u64::from(prompt.max_tokens);
        let wanted = planned.min(max_tokens);
        let max = wanted.min(budget);
        let (sent, _) =
            script::stream_at_most(s.script, s.pacing, &frame, &sink, &self.produced, max).await?;
        Ok(if sent == max && max < wanted {
            FinishReason::Deposit
        } else if sent == max && max == max_tokens {
            FinishReason::Length
        } else {
            FinishReason::Stop
        })
    }

    pub(super) fn scripted_stream_ended(
        &self,
        s: &Scripted,
        session: SessionId,
        newest: Option<SignedReceipt>,
    ) {
        if let Some(mut entry) = s.sessions.get_mut(&session) {
            entry.busy = false;
            let held = entry.newest.as_ref().map_or(0, |r| r.tokens);
            if let Some(receipt) = newest
                && receipt.tokens > held
            {
                entry.newest = Some(receipt);
            }
        }
    }

    pub(super) fn scripted_end(
        &self,
        s: &Scripted,
        session: SessionId,
    ) -> Result<SessionEnding, StreamError> {
        let mut entry = s
            .sessions
            .get_mut(&session)
            .ok_or_else(|| refused(StreamErrorCode::UnknownJob, format!("no session {session}")))?;
        entry.ended = true;
        Ok(SessionEnding {
            tokens: entry.newest.as_ref().map_or(0, |r| r.tokens),
        })
    }
}

/// The session methods of [`TestHost`]'s [`HostService`], for its impl to call.
pub(super) async fn forward_run(
    host: &TestHost,
    session: SessionId,
    prompt: SessionPrompt,
    budget: u64,
    sink: StreamSink,
) -> Result<FinishReason, StreamError> {
    match &host.decider {
        Decider::Inner(inner) => inner.run_session(session, prompt, budget, sink).await,
        Decider::Script(s) => host.scripted_session_run(s, prompt, budget, sink).await,
    }
}
