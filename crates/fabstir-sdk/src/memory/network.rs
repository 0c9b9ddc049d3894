//! [`InMemoryNetwork`]: scripted hosts that quote, claim, stream and settle on an
//! [`InMemoryChain`], or misbehave on purpose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fabstir_core::auth::ClientSigner;
use fabstir_core::cid::cid_of;
use fabstir_core::clock::unix_now;
use fabstir_core::job::prompt_hash;
use fabstir_core::node::NodeHistory;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::{Receipt, ReceiptDomain, SignedReceipt, Transcript};
use fabstir_core::wire::{
    PromptFrame, Quote, QuoteRequest, RejectReason, SessionPrompt, StreamDone, StreamToken,
    TokenBatch,
};
use fabstir_core::{
    DiscoveredNode, JobId, NodeCapabilities, NodePeerId, ProviderQuery, SessionEvent, SessionId,
    StreamEvent, TokenAmount, TokenPrice,
};
use futures::StreamExt;
use futures::stream::BoxStream;

mod sessions;

use super::InMemoryChain;
use crate::ports::ChainLayer as _;
use crate::ports::NetworkLayer;
use crate::{Error, Result};

/// How a scripted host behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBehaviour {
    /// Quotes, claims, streams `tokens` tokens, settles.
    Honest,
    /// Quotes and accepts but never claims.
    NeverClaims,
    /// Claims, streams this many tokens, then the connection breaks.
    DiesAfter(usize),
    /// Streams and settles, but signs and submits the CID of other text.
    WrongCid,
    /// Quotes ten times the price it signed in its capabilities.
    Overcharges,
}

/// A scripted host of the [`InMemoryNetwork`].
#[derive(Debug, Clone)]
pub struct ScriptedHost {
    /// What it advertises.
    pub capabilities: NodeCapabilities,
    /// Measured latency discovery reports.
    pub latency: Duration,
    /// How it behaves.
    pub behaviour: HostBehaviour,
    /// Tokens it generates per job (each token's text is `"tok{i} "`).
    pub tokens: usize,
}

impl ScriptedHost {
    /// A host at `address` serving `model` at `price` per token of `token`.
    pub fn new(
        index: u8,
        model: fabstir_core::ModelId,
        token: Address,
        price: TokenAmount,
        behaviour: HostBehaviour,
    ) -> Self {
        let mut peer = vec![0x12, 0x20];
        peer.extend([index; 32]);
        Self {
            capabilities: NodeCapabilities {
                peer_id: NodePeerId::from_bytes(peer)
                    .expect("a sha2-256 multihash of 32 bytes is a valid peer id"),
                eth_address: Address::repeat_byte(index),
                models: vec![model],
                prices: vec![TokenPrice {
                    token,
                    price_per_token: price,
                }],
                max_tokens: 1_000,
                current_load: 0,
                max_concurrent: 4,
                queue_depth: 0,
                version: "scripted/0".into(),
            },
            latency: Duration::from_millis(u64::from(index)),
            behaviour,
            tokens: 5,
        }
    }
}

/// A network of scripted hosts that act on an [`InMemoryChain`]. It passes the network
/// conformance suite that the libp2p-backed [`P2pNetwork`](crate::P2pNetwork) passes.
#[derive(Debug)]
pub struct InMemoryNetwork {
    chain: Arc<InMemoryChain>,
    hosts: Vec<ScriptedHost>,
    history: Mutex<HashMap<NodePeerId, NodeHistory>>,
    /// The newest receipt of each session, as its host holds it.
    receipts: Mutex<HashMap<SessionId, SignedReceipt>>,
}

impl InMemoryNetwork {
    /// A network of `hosts` on `chain`.
    pub fn new(chain: Arc<InMemoryChain>, hosts: Vec<ScriptedHost>) -> Self {
        Self {
            chain,
            hosts,
            history: Mutex::new(HashMap::new()),
            receipts: Mutex::new(HashMap::new()),
        }
    }

    /// `receipt` signed by the client's `signer`, as a real client signs on the stream.
    async fn sign(&self, signer: &dyn ClientSigner, receipt: Receipt) -> Result<SignedReceipt> {
        let domain = ReceiptDomain {
            chain_id: self.chain.chain_id(),
            marketplace: self.chain.marketplace(),
        };
        let signature = signer
            .sign_digest(receipt.digest(&domain))
            .await
            .map_err(|e| Error::P2p(fabstir_p2p::Error::from(e)))?;
        Ok(SignedReceipt {
            tokens: receipt.tokens,
            transcript: receipt.transcript,
            signature,
        })
    }

    fn newest_receipt(&self, session: SessionId) -> Option<SignedReceipt> {
        self.receipts.lock().ok()?.get(&session).cloned()
    }

    fn keep_receipt(&self, session: SessionId, receipt: SignedReceipt) {
        if let Ok(mut receipts) = self.receipts.lock() {
            receipts.insert(session, receipt);
        }
    }

    fn host(&self, peer: &NodePeerId) -> Result<&ScriptedHost> {
        self.hosts
            .iter()
            .find(|h| &h.capabilities.peer_id == peer)
            .ok_or_else(|| {
                Error::P2p(fabstir_p2p::Error::Dial {
                    peer: peer.to_string(),
                    reason: "unknown host".into(),
                })
            })
    }

    /// The history recorded for a host.
    pub fn history(&self, peer: &NodePeerId) -> NodeHistory {
        self.history
            .lock()
            .map(|h| h.get(peer).copied().unwrap_or_default())
            .unwrap_or_default()
    }
}

#[async_trait]
impl NetworkLayer for InMemoryNetwork {
    async fn find_providers(&self, query: &ProviderQuery) -> Result<Vec<DiscoveredNode>> {
        Ok(self
            .hosts
            .iter()
            .map(|h| DiscoveredNode {
                capabilities: h.capabilities.clone(),
                addresses: Vec::new(),
                latency: h.latency,
                history: self.history(&h.capabilities.peer_id),
            })
            .filter(|n| query.matches(n))
            .collect())
    }

    async fn quote(&self, peer: &NodePeerId, q: QuoteRequest) -> Result<Quote> {
        let caps = &self.host(peer)?.capabilities;
        match caps.price_for(q.token) {
            Some(price) if caps.serves(&q.model) && q.offered_price_per_token >= price => {
                let overcharge = if self.host(peer)?.behaviour == HostBehaviour::Overcharges {
                    10u64
                } else {
                    1
                };
                Ok(Quote {
                    host: caps.eth_address,
                    model: q.model,
                    price_per_token: price.checked_mul(overcharge).unwrap_or(price),
                    token: q.token,
                    max_tokens: q.max_tokens,
                    valid_until: unix_now() + 60,
                    credit_window: fabstir_p2p::StreamConfig::default().credit_window,
                })
            }
            _ => Err(Error::HostDeclined {
                host: peer.clone(),
                reason: RejectReason::PriceTooLow,
                message: "no".into(),
            }),
        }
    }

    async fn announce_posted(&self, peer: &NodePeerId, job: JobId) -> Result<()> {
        let host = self.host(peer)?;
        if host.behaviour != HostBehaviour::NeverClaims {
            self.chain.claim(job, host.capabilities.eth_address)?;
        }
        Ok(())
    }

    async fn open_stream(
        &self,
        peer: &NodePeerId,
        job: JobId,
        signer: Arc<dyn ClientSigner>,
        prompt: PromptFrame,
    ) -> Result<BoxStream<'static, Result<StreamEvent>>> {
        let host = self.host(peer)?.clone();
        // Like a real host, it stops at the job's `max_tokens`.
        let max_tokens = self.chain.job(job).await?.details.max_tokens as usize;
        let texts: Vec<String> = (0..host.tokens.min(max_tokens))
            .map(|i| format!("tok{i} "))
            .collect();
        let mut events: Vec<Result<StreamEvent>> = Vec::new();
        let stop = match host.behaviour {
            HostBehaviour::DiesAfter(n) => n.min(texts.len()),
            _ => texts.len(),
        };
        for (i, text) in texts.iter().enumerate().take(stop) {
            events.push(Ok(StreamEvent::Tokens(TokenBatch {
                first_index: i as u64,
                tokens: vec![StreamToken {
                    id: i as u32,
                    text: text.clone(),
                }],
            })));
        }
        if let HostBehaviour::DiesAfter(_) = host.behaviour {
            events.push(Err(Error::P2p(fabstir_p2p::Error::Truncated(
                "connection reset".into(),
            ))));
        } else {
            let full: String = texts.concat();
            let reported = if host.behaviour == HostBehaviour::WrongCid {
                "not what was streamed".to_owned()
            } else {
                full.clone()
            };
            let cid = cid_of(reported.as_bytes());
            // The client's final receipt covers every token; the host settles with it.
            let mut transcript = Transcript::new(job, prompt_hash(&prompt.prompt));
            for (i, text) in texts.iter().enumerate() {
                transcript.push(i as u32, text);
            }
            let signed = self.sign(signer.as_ref(), transcript.receipt(job)).await?;
            self.chain
                .submit(job, host.capabilities.eth_address, &cid, &signed)?;
            events.push(Ok(StreamEvent::Done(StreamDone {
                result_cid: cid,
                tokens_used: texts.len() as u64,
                signature: Vec::new(),
            })));
        }
        Ok(futures::stream::iter(events).boxed())
    }

    async fn open_session_stream(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
        prompt: SessionPrompt,
    ) -> Result<BoxStream<'static, Result<SessionEvent>>> {
        let events = self.session_prompt(host, session, signer, prompt).await?;
        Ok(futures::stream::iter(events).boxed())
    }

    async fn end_session(
        &self,
        host: &NodePeerId,
        session: SessionId,
        signer: Arc<dyn ClientSigner>,
    ) -> Result<u64> {
        self.close_session_for(host, session, signer.as_ref()).await
    }

    fn record_outcome(&self, host: &NodePeerId, success: bool) {
        if let Ok(mut history) = self.history.lock() {
            let entry = history.entry(host.clone()).or_default();
            if success {
                entry.successes += 1;
            } else {
                entry.failures += 1;
            }
        }
    }
}
