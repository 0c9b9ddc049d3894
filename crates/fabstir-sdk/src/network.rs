//! [`P2pNetwork`]: the real network layer, a `fabstir-p2p` node acting as a client, and the
//! application wallet as the client's stream signer.

use std::sync::Arc;

use async_trait::async_trait;
use ethers::signers::LocalWallet;
use fabstir_core::auth::{ClientSigner, SignerError};
use fabstir_core::primitives::{Address, H256};
use fabstir_core::wire::{
    NegotiationRequest, NegotiationResponse, PromptFrame, Quote, QuoteRequest, SessionPrompt,
};
use fabstir_core::{
    DiscoveredNode, JobId, NodePeerId, ProviderQuery, SessionEvent, SessionId, StreamEvent,
};
use fabstir_p2p::{Network, PoolStats};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::ports::NetworkLayer;
use crate::{Error, Result};

/// The real network: a `fabstir-p2p` node acting as a client.
#[derive(Debug, Clone)]
pub struct P2pNetwork {
    network: Network,
}

impl P2pNetwork {
    /// Wraps a running network node.
    pub fn new(network: Network) -> Self {
        Self { network }
    }

    /// The network node.
    pub fn network(&self) -> &Network {
        &self.network
    }

    async fn ask(
        &self,
        host: &NodePeerId,
        request: NegotiationRequest,
    ) -> Result<NegotiationResponse> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        let answer = self.network.negotiate(peer, request).await?;
        if let NegotiationResponse::Rejected { reason, message } = answer {
            return Err(Error::HostDeclined {
                host: host.clone(),
                reason,
                message,
            });
        }
        Ok(answer)
    }
}

fn unexpected(host: &NodePeerId, answer: &NegotiationResponse) -> Error {
    Error::UnexpectedAnswer {
        host: host.clone(),
        answer: format!("{answer:?}"),
    }
}

#[async_trait]
impl NetworkLayer for P2pNetwork {
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        Ok(self.network.find_providers(query).await?)
    }

    async fn quote(&self, host: &NodePeerId, request: QuoteRequest) -> Result<Quote> {
        match self.ask(host, NegotiationRequest::Quote(request)).await? {
            NegotiationResponse::Quote(quote) => Ok(quote),
            other => Err(unexpected(host, &other)),
        }
    }

    async fn announce_posted(&self, host: &NodePeerId, job: JobId) -> Result<()> {
        match self.ask(host, NegotiationRequest::Posted { job }).await? {
            NegotiationResponse::Accepted { .. } => Ok(()),
            other => Err(unexpected(host, &other)),
        }
    }

    async fn open_stream(
        &self,
        host: &NodePeerId,
        job: JobId,
        signer: Arc<dyn ClientSigner>,
        prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        let stream = self.network.open_stream(peer, job, signer, prompt).await?;
        Ok(stream.map(|event| event.map_err(Into::into)).boxed())
    }

    async fn open_session_stream(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
        prompt: SessionPrompt,
    ) -> Result<BoxStream<'static, Result<SessionEvent>>> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        let stream = self
            .network
            .open_session_stream(peer, session, signer, prompt)
            .await?;
        Ok(stream.map(|event| event.map_err(Into::into)).boxed())
    }

    async fn end_session(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
    ) -> Result<u64> {
        let peer = fabstir_p2p::libp2p_peer_id(host)?;
        Ok(self
            .network
            .end_session(peer, session, signer)
            .await?
            .tokens)
    }

    fn record_outcome(&self, host: &NodePeerId, success: bool) {
        self.network.record_outcome(host, success);
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.network.pool_stats())
    }
}

/// Signs the client's stream challenges and receipts with the application's wallet (held for
/// the stream only, never stored).
#[derive(Debug, Clone)]
pub(crate) struct WalletClientSigner(pub(crate) Arc<LocalWallet>);

#[async_trait]
impl ClientSigner for WalletClientSigner {
    fn address(&self) -> Address {
        ethers::signers::Signer::address(self.0.as_ref())
    }

    async fn sign_message(&self, message: &str) -> std::result::Result<Vec<u8>, SignerError> {
        let signature = ethers::signers::Signer::sign_message(self.0.as_ref(), message)
            .await
            .map_err(SignerError::new)?;
        Ok(signature.to_vec())
    }

    async fn sign_digest(&self, digest: H256) -> std::result::Result<Vec<u8>, SignerError> {
        let signature = self.0.sign_hash(digest).map_err(SignerError::new)?;
        Ok(signature.to_vec())
    }
}
