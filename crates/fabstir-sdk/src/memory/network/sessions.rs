//! The scripted hosts' sessions: a prompt is served like a real host's (the session open with
//! this host, the signer its client, one window of tokens `"tok{i} "` within what the deposit
//! pays for), receipted cumulatively over the session, and the client's end closes the
//! session on the [`InMemoryChain`](super::InMemoryChain) with the newest receipt.

use std::sync::Arc;

use fabstir_core::auth::ClientSigner;
use fabstir_core::receipt::Transcript;
use fabstir_core::wire::{FinishReason, SessionPrompt, StreamErrorCode, StreamToken, TokenBatch};
use fabstir_core::{NodePeerId, OnChainSession, PromptEnd, SessionEvent, SessionId, SessionStatus};

use super::{HostBehaviour, InMemoryNetwork};
use crate::ports::ChainLayer as _;
use crate::{Error, Result};

fn refused(code: StreamErrorCode, message: &str) -> Error {
    Error::P2p(fabstir_p2p::Error::Remote {
        code,
        message: message.to_owned(),
    })
}

impl InMemoryNetwork {
    /// Checks that `signer` may use `session` with `peer`: returns the session as the chain
    /// holds it.
    async fn checked_session(
        &self,
        peer: &NodePeerId,
        session: SessionId,
        signer: &dyn ClientSigner,
    ) -> Result<OnChainSession> {
        let host = self.host(peer)?.capabilities.eth_address;
        let on_chain = self
            .chain
            .session(session)
            .await
            .map_err(|_| refused(StreamErrorCode::UnknownJob, "no such session"))?;
        if on_chain.details.host != host {
            return Err(refused(
                StreamErrorCode::UnknownJob,
                "not this host's session",
            ));
        }
        if on_chain.client != signer.address() {
            return Err(refused(
                StreamErrorCode::AuthFailed,
                "not the session's client",
            ));
        }
        if on_chain.status != SessionStatus::Open {
            return Err(refused(
                StreamErrorCode::JobClosed,
                "the session is not open",
            ));
        }
        Ok(on_chain)
    }

    /// One prompt of `session`: the events a real host's stream would carry.
    pub(super) async fn session_prompt(
        &self,
        peer: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
        prompt: SessionPrompt,
    ) -> Result<Vec<Result<SessionEvent>>> {
        let covered = self
            .checked_session(peer, session, signer.as_ref())
            .await?
            .covered_tokens();
        let behaviour = self.host(peer)?.behaviour;
        let scripted = self.host(peer)?.tokens as u64;
        let newest = self.newest_receipt(session);
        let mut transcript = match &newest {
            Some(r) => Transcript::resume(r.transcript, r.tokens),
            None => Transcript::session(session),
        };
        transcript.push_prompt(prompt.input.hash());
        let start = transcript.counted();
        let available = covered.saturating_sub(start);
        let wanted = scripted.min(u64::from(prompt.max_tokens));
        let count = wanted.min(available);
        let stop = match behaviour {
            HostBehaviour::DiesAfter(n) => (n as u64).min(count),
            _ => count,
        };
        let mut events = Vec::new();
        for i in 0..stop {
            let token = StreamToken {
                id: u32::try_from(i).unwrap_or(u32::MAX),
                text: format!("tok{i} "),
            };
            transcript.push(token.id, &token.text);
            events.push(Ok(SessionEvent::Tokens(TokenBatch {
                first_index: i,
                tokens: vec![token],
            })));
        }
        if let HostBehaviour::DiesAfter(_) = behaviour {
            events.push(Err(Error::P2p(fabstir_p2p::Error::Truncated(
                "connection reset".into(),
            ))));
            return Ok(events);
        }
        let receipt = self
            .sign(signer.as_ref(), transcript.receipt(session))
            .await?;
        self.keep_receipt(session, receipt.clone());
        let finish = if count < wanted {
            FinishReason::Deposit
        } else if wanted == u64::from(prompt.max_tokens) {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        events.push(Ok(SessionEvent::Done(PromptEnd {
            tokens: stop,
            counted: receipt.tokens - start,
            finish,
            receipted: receipt.tokens,
        })));
        Ok(events)
    }

    /// The client's end of `session`: the host closes it with the newest receipt.
    pub(super) async fn close_session_for(
        &self,
        peer: &NodePeerId,
        session: SessionId,
        signer: &dyn ClientSigner,
    ) -> Result<u64> {
        let host = self
            .checked_session(peer, session, signer)
            .await?
            .details
            .host;
        let newest = self.newest_receipt(session);
        self.chain.close_session(session, host, newest.as_ref())?;
        Ok(newest.map_or(0, |r| r.tokens))
    }
}
