//! A client that drives a job's stream frame by frame, for tests of hostile clients: it
//! answers the challenge, sends the prompt, keeps the transcript of what arrives, and sends
//! only the receipts the test decides (true ones, forged, replayed, inflated, or none).

use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::JobId;
use fabstir_core::auth;
use fabstir_core::job::prompt_hash;
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt, Transcript};
use fabstir_core::wire::{
    self, AuthChallenge, AuthResponse, ClientFrame, FrameDecoder, HostFrame, PromptFrame,
    StreamErrorCode,
};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::PeerId;

use crate::{Error, Network, Result};

/// One job's stream, driven by hand. Dropping it resets the stream.
pub struct RawClient {
    stream: libp2p::Stream,
    decoder: FrameDecoder<HostFrame>,
    challenge: AuthChallenge,
    transcript: Transcript,
    job: JobId,
    domain: ReceiptDomain,
    key: SigningKey,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawClient")
            .field("job", &self.job)
            .field("counted", &self.transcript.counted())
            .finish_non_exhaustive()
    }
}

impl RawClient {
    /// Opens a stream from `network` to `host` for `job`, answers the challenge with `key` for
    /// the chain and marketplace of `domain`, waits to be authenticated and sends `prompt`.
    /// A refusal during the handshake is [`Error::Remote`] with the host's code.
    pub async fn start(
        network: &Network,
        host: PeerId,
        job: JobId,
        domain: ReceiptDomain,
        key: SigningKey,
        prompt: PromptFrame,
    ) -> Result<Self> {
        let stream = network.open_raw_stream(host).await?;
        let mut client = Self {
            stream,
            decoder: FrameDecoder::new(),
            challenge: AuthChallenge {
                host: Default::default(),
                nonce: [0; 32],
                expires_at: 0,
                credit_window: 0,
            },
            transcript: Transcript::new(job, prompt_hash(&prompt.prompt)),
            job,
            domain,
            key,
        };
        client.challenge = match client.next_frame().await? {
            Some(HostFrame::Challenge(challenge)) => challenge,
            other => return Err(unexpected("a challenge", other)),
        };
        let message = auth::client_auth_message(
            domain.chain_id,
            domain.marketplace,
            job,
            client.challenge.host,
            &client.challenge.nonce,
        );
        let signature = auth::sign_message(&client.key, &message)?.to_vec();
        let answer = ClientFrame::Auth(AuthResponse {
            job,
            nonce: client.challenge.nonce,
            signature,
        });
        client.send(&answer).await?;
        match client.next_frame().await? {
            Some(HostFrame::Authenticated) => {}
            other => return Err(unexpected("authentication", other)),
        }
        client.send(&ClientFrame::Prompt(prompt)).await?;
        Ok(client)
    }

    /// The host's challenge: its address and the credit window it streams with.
    pub fn challenge(&self) -> &AuthChallenge {
        &self.challenge
    }

    /// Counted tokens (those with text) received so far.
    pub fn counted(&self) -> u64 {
        self.transcript.counted()
    }

    /// The next frame from the host, `None` at the end of the stream; the tokens of a batch
    /// join the transcript. A host's error frame is returned as a frame, not an error.
    pub async fn next_frame(&mut self) -> Result<Option<HostFrame>> {
        let frame = self.next_undigested().await?;
        if let Some(HostFrame::Tokens(batch)) = &frame {
            for token in &batch.tokens {
                self.transcript.push(token.id, &token.text);
            }
        }
        Ok(frame)
    }

    /// The next frame, its tokens not yet in the transcript.
    async fn next_undigested(&mut self) -> Result<Option<HostFrame>> {
        loop {
            if let Some(frame) = self.decoder.next_message()? {
                return Ok(Some(frame));
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.extend(&buf[..n]);
        }
    }

    /// Reads token batches until at least `counted` counted tokens arrived; answers the
    /// count reached. Any other frame, or the end of the stream, is an error.
    pub async fn read_until(&mut self, counted: u64) -> Result<u64> {
        while self.counted() < counted {
            match self.next_frame().await? {
                Some(HostFrame::Tokens(_)) => {}
                other => return Err(unexpected("tokens", other)),
            }
        }
        Ok(self.counted())
    }

    /// A true receipt for what arrived so far, signed with the client's key.
    pub fn receipt(&self) -> SignedReceipt {
        self.receipt_signed_by(&self.key)
    }

    /// A receipt for what arrived so far, signed by `key` for the stream's chain and
    /// marketplace.
    pub fn receipt_signed_by(&self, key: &SigningKey) -> SignedReceipt {
        self.receipt_for(key, &self.domain)
    }

    /// A receipt for what arrived so far, signed by `key` for `domain`.
    pub fn receipt_for(&self, key: &SigningKey, domain: &ReceiptDomain) -> SignedReceipt {
        let receipt = self.transcript.receipt(self.job);
        let signature = receipt
            .sign(domain, key)
            .expect("a valid secp256k1 key signs")
            .to_vec();
        SignedReceipt {
            tokens: receipt.tokens,
            transcript: receipt.transcript,
            signature,
        }
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: &ClientFrame) -> Result<()> {
        self.stream.write_all(&wire::encode_frame(frame)?).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends a receipt.
    pub async fn send_receipt(&mut self, receipt: SignedReceipt) -> Result<()> {
        self.send(&ClientFrame::Receipt(receipt)).await
    }

    /// Reads until the stream ends, sending a true receipt for the transcript at each count
    /// of `receipt_at` as it is reached. Answers the counted tokens received and the code of
    /// the host's error frame if one ended the stream (`None`: it ended with `Done` or closed).
    pub async fn read_to_end(&mut self, receipt_at: &[u64]) -> (u64, Option<StreamErrorCode>) {
        loop {
            match self.next_undigested().await {
                Ok(Some(HostFrame::Tokens(batch))) => {
                    let mut due = Vec::new();
                    for token in &batch.tokens {
                        let before = self.counted();
                        self.transcript.push(token.id, &token.text);
                        if self.counted() > before && receipt_at.contains(&self.counted()) {
                            due.push(self.receipt());
                        }
                    }
                    for receipt in due {
                        if self.send_receipt(receipt).await.is_err() {
                            return (self.counted(), None);
                        }
                    }
                }
                Ok(Some(HostFrame::Error(e))) => return (self.counted(), Some(e.code)),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return (self.counted(), None),
            }
        }
    }
}

fn unexpected(wanted: &str, got: Option<HostFrame>) -> Error {
    match got {
        Some(HostFrame::Error(e)) => Error::Remote {
            code: e.code,
            message: e.message,
        },
        other => Error::Truncated(format!("expected {wanted}, got {other:?}")),
    }
}
