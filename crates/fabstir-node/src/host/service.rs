//! The network layer's [`HostService`] over a shared [`Host`]: each call is one of the host's
//! decisions.

use std::sync::Arc;

use async_trait::async_trait;
use fabstir_core::JobId;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::wire::{
    CapabilitiesResponse, NegotiationRequest, NegotiationResponse, PromptFrame, StreamDone,
    StreamError,
};
use fabstir_p2p::{ClientProof, HostService, PeerId, StreamSink};

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

    async fn result(&self, cid: &str) -> Option<Vec<u8>> {
        let cid = fabstir_storage::parse_cid(cid).ok()?;
        self.0.store.get(&cid).await.ok()
    }
}
