//! Client-signed receipts: what the client received, signed with EIP-712 so that the
//! marketplace contract checks it on chain and pays for exactly that.
//!
//! A [`Receipt`] names a job, the cumulative count of tokens the client received (and counts:
//! tokens with empty text earn nothing) and a [`Transcript`] hash committing to the prompt and
//! to every delivered token in order. The client signs a newer receipt after each batch it has
//! checked; the host settles with the newest. The encoding is specified in `docs/PROTOCOL.md`
//! with test vectors (see the tests below), and the contract rebuilds the same digest.

use ethers_core::types::transaction::eip712::EIP712Domain;
use ethers_core::types::{Address, H256, U256};
use ethers_core::utils::keccak256;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::auth::{SigningKey, recover_digest, sign_digest};
use crate::ids::JobId;

/// The EIP-712 domain name of the marketplace.
pub const DOMAIN_NAME: &str = "Fabstir Marketplace";
/// The EIP-712 domain version of the marketplace.
pub const DOMAIN_VERSION: &str = "1";
/// The EIP-712 type of a receipt.
pub const RECEIPT_TYPE: &str = "Receipt(uint256 jobId,uint64 tokens,bytes32 transcript)";

/// The most counted tokens a client lets arrive unreceipted before it signs: it signs every
/// [`receipt_interval`] tokens, so receipts flow at a rate the host's window never has to
/// wait for beyond one round trip.
pub const MAX_RECEIPT_INTERVAL: u32 = 32;

/// How many counted tokens a client receives between two receipts under a credit window of
/// `window` tokens: half the window, at most [`MAX_RECEIPT_INTERVAL`], at least one.
pub fn receipt_interval(window: u32) -> u32 {
    (window / 2).clamp(1, MAX_RECEIPT_INTERVAL)
}
/// The domain tag the transcript starts from.
const TRANSCRIPT_TAG: &[u8] = b"fabstir transcript v1";

/// What a receipt is signed for: the chain and the marketplace contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptDomain {
    /// The chain id.
    pub chain_id: u64,
    /// The JobMarketplace address (EIP-712 `verifyingContract`).
    pub marketplace: Address,
}

impl ReceiptDomain {
    /// The EIP-712 domain separator.
    pub fn separator(&self) -> [u8; 32] {
        EIP712Domain {
            name: Some(DOMAIN_NAME.to_owned()),
            version: Some(DOMAIN_VERSION.to_owned()),
            chain_id: Some(U256::from(self.chain_id)),
            verifying_contract: Some(self.marketplace),
            salt: None,
        }
        .separator()
    }
}

/// The client's statement: it received `tokens` counted tokens of `job`, the whole exchange
/// hashing to `transcript`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The job.
    pub job: JobId,
    /// Tokens received with text, from the first (cumulative).
    pub tokens: u64,
    /// The transcript hash after the last of them (and any empty tokens before it).
    pub transcript: H256,
}

impl Receipt {
    /// The EIP-712 struct hash.
    pub fn struct_hash(&self) -> [u8; 32] {
        let mut encoded = Vec::with_capacity(4 * 32);
        encoded.extend_from_slice(&keccak256(RECEIPT_TYPE));
        encoded.extend_from_slice(&word(U256::from(self.job.0)));
        encoded.extend_from_slice(&word(U256::from(self.tokens)));
        encoded.extend_from_slice(self.transcript.as_bytes());
        keccak256(encoded)
    }

    /// The digest signed: `keccak256(0x19 0x01 || domainSeparator || structHash)`.
    pub fn digest(&self, domain: &ReceiptDomain) -> H256 {
        let mut encoded = Vec::with_capacity(2 + 64);
        encoded.extend_from_slice(&[0x19, 0x01]);
        encoded.extend_from_slice(&domain.separator());
        encoded.extend_from_slice(&self.struct_hash());
        H256(keccak256(encoded))
    }

    /// Signs the receipt with `key`: 65 bytes `r || s || v`, `v` in {27, 28}.
    pub fn sign(&self, domain: &ReceiptDomain, key: &SigningKey) -> Result<[u8; 65]> {
        sign_digest(key, self.digest(domain))
    }

    /// The address that signed this receipt (an EOA; contract wallets are checked on chain
    /// through ERC-1271). Malformed signatures are errors, never panics.
    pub fn signer(&self, domain: &ReceiptDomain, signature: &[u8]) -> Result<Address> {
        recover_digest(self.digest(domain), signature)
    }
}

/// A receipt with the client's signature, as it travels on the stream and goes on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// Tokens received with text (cumulative); the job is the stream's.
    pub tokens: u64,
    /// The transcript hash after them.
    pub transcript: H256,
    /// The client's 65-byte EIP-712 signature (or an ERC-1271 wallet's signature bytes).
    pub signature: Vec<u8>,
}

impl SignedReceipt {
    /// The receipt this signs, for `job`.
    pub fn receipt(&self, job: JobId) -> Receipt {
        Receipt {
            job,
            tokens: self.tokens,
            transcript: self.transcript,
        }
    }
}

/// The running transcript hash of a job: starts from the job and its prompt hash, then takes
/// each delivered token in order, id and text. Tokens with empty text are hashed but not
/// counted, so padding a stream with them earns nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript {
    hash: H256,
    counted: u64,
    delivered: u64,
}

impl Transcript {
    /// The transcript of `job` before any token: `keccak256(tag || jobId || promptHash)`, the
    /// job id as a 32-byte big-endian word.
    pub fn new(job: JobId, prompt_hash: H256) -> Self {
        let mut encoded = Vec::with_capacity(TRANSCRIPT_TAG.len() + 64);
        encoded.extend_from_slice(TRANSCRIPT_TAG);
        encoded.extend_from_slice(&word(U256::from(job.0)));
        encoded.extend_from_slice(prompt_hash.as_bytes());
        Self {
            hash: H256(keccak256(encoded)),
            counted: 0,
            delivered: 0,
        }
    }

    /// The transcript of a session before its first prompt: [`Transcript::new`] with a zero
    /// prompt hash (ids are shared with jobs, so no job starts from the same hash).
    pub fn session(session: JobId) -> Self {
        Self::new(session, H256::zero())
    }

    /// Continues a transcript from a receipted point: `hash` after `counted` counted tokens
    /// (a session's newest receipt). Tokens delivered count from here.
    pub fn resume(hash: H256, counted: u64) -> Self {
        Self {
            hash,
            counted,
            delivered: 0,
        }
    }

    /// Takes a session's next prompt, by its [`PromptInput::hash`](crate::wire::PromptInput::hash):
    /// `keccak256(previous || 0xffffffff || 0xffffffff || inputHash)`. No token's text is
    /// `2^32 - 1` bytes long, so a prompt step never reads as a token step.
    pub fn push_prompt(&mut self, input_hash: H256) {
        let mut encoded = Vec::with_capacity(32 + 8 + 32);
        encoded.extend_from_slice(self.hash.as_bytes());
        encoded.extend_from_slice(&[0xff; 8]);
        encoded.extend_from_slice(input_hash.as_bytes());
        self.hash = H256(keccak256(encoded));
    }

    /// Takes the next delivered token: `keccak256(previous || id (4 bytes BE) || text length
    /// (4 bytes BE) || text)`.
    pub fn push(&mut self, id: u32, text: &str) {
        let mut encoded = Vec::with_capacity(32 + 8 + text.len());
        encoded.extend_from_slice(self.hash.as_bytes());
        encoded.extend_from_slice(&id.to_be_bytes());
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        encoded.extend_from_slice(&len.to_be_bytes());
        encoded.extend_from_slice(text.as_bytes());
        self.hash = H256(keccak256(encoded));
        self.delivered += 1;
        if !text.is_empty() {
            self.counted += 1;
        }
    }

    /// The hash so far.
    pub fn hash(&self) -> H256 {
        self.hash
    }

    /// Tokens with text so far: what a receipt counts and the host is paid for.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// Tokens delivered so far (since [`Transcript::resume`], if resumed), with or without
    /// text.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The receipt for `job` at this point.
    pub fn receipt(&self, job: JobId) -> Receipt {
        Receipt {
            job,
            tokens: self.counted,
            transcript: self.hash,
        }
    }
}

fn word(value: U256) -> [u8; 32] {
    let mut out = [0u8; 32];
    value.to_big_endian(&mut out);
    out
}

#[cfg(test)]
mod tests;
