//! The network layer's [`HostService`] over a shared [`Host`]: each call is one of the host's
//! decisions.

use std::sync::Arc;

use async_trait::async_trait;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    CapabilitiesResponse, FinishReason, NegotiationRequest, NegotiationResponse, PromptFrame,
    SessionEnding, SessionPrompt, StreamDone, StreamError,
};
use fabstir_core::{JobId, SessionId};
use fabstir_p2p::{ClientProof, HostService, PeerId, ResultResponse, SessionGrant, StreamSink};

use super::Host;

/// The [`HostService`] the network layer calls, over a shared [`Host`].
#[derive(Debug, Clone)]
pub struct HostHandle(pub Arc<Host>);

#[async_trait]
impl HostService for HostHandle {
    fn address(&self) -> Address {
        self.0.address
    }

    async fn capabilities(&self) -> CapabilitiesResponse {
        self.0.signed_capabilities()
    }

    async fn job(&self, _peer: PeerId, request: NegotiationRequest) -> NegotiationResponse {
        self.0.answer(request).await
    }

    async fn authorize(&self, job: JobId, proof: &ClientProof) -> Result<Address, StreamError> {
        self.0.authorize(job, proof).await
    }

    async fn wallet_accepts(&self, wallet: Address, digest: H256, signature: &[u8]) -> bool {
        self.0.wallet_accepts(wallet, digest, signature).await
    }

    async fn run(
        &self,
        job: JobId,
        client: Address,
        prompt: PromptFrame,
        tokens: StreamSink,
    ) -> Result<StreamDone, StreamError> {
        self.0.serve_stream(job, client, prompt, tokens).await
    }

    async fn settle(&self, job: JobId, receipt: Option<SignedReceipt>) {
        self.0.settle(job, receipt).await;
    }

    async fn authorize_session(
        &self,
        session: SessionId,
        proof: &ClientProof,
    ) -> Result<SessionGrant, StreamError> {
        self.0.authorize_session(session, proof).await
    }

    async fn run_session(
        &self,
        session: SessionId,
        prompt: SessionPrompt,
        budget: u64,
        sink: StreamSink,
    ) -> Result<FinishReason, StreamError> {
        self.0.run_session(session, prompt, budget, sink).await
    }

    async fn end_session(&self, session: SessionId) -> Result<SessionEnding, StreamError> {
        self.0.end_session(session).await
    }

    async fn session_stream_ended(&self, session: SessionId, newest: Option<SignedReceipt>) {
        self.0.session_stream_ended(session, newest).await;
    }

    async fn result(&self, job: JobId, cid: &Cid, proof: &ClientProof) -> ResultResponse {
        self.0.stored_result(job, cid, proof).await
    }
}
