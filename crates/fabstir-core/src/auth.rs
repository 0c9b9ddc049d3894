//! What hosts and clients sign, and how signatures are checked.
//!
//! Every signed message is plain text signed with EIP-191 (`personal_sign`), so a browser
//! wallet shows the user what they sign and every implementation can rebuild the bytes. The
//! exact texts are part of the protocol (`docs/PROTOCOL.md`).
//!
//! - [`identity_message`]: the host's Ethereum key vouches for its libp2p peer id. Noise
//!   already proves the peer id on the connection, so the pair proves the Ethereum address.
//! - [`client_auth_message`]: the client proves it is the job's client, answering a fresh,
//!   single-use nonce from the host ([`ChallengeBook`]).
//! - [`result_message`]: the host signs the result CID and token count it streamed.

use std::collections::HashMap;

use async_trait::async_trait;

/// The secp256k1 key type of Ethereum accounts, re-exported for signing protocol messages.
pub use ethers_core::k256::ecdsa::SigningKey;
use ethers_core::types::{Address, H256, Signature, U256};
use ethers_core::utils::hash_message;

use crate::cid::Cid;
use crate::ids::{JobId, NodePeerId};
use crate::{Error, Result};

/// The text a host signs to bind its peer id to its Ethereum address.
pub fn identity_message(chain_id: u64, peer_id: &NodePeerId, host: Address) -> String {
    format!("fabstir identity v1\nchain: {chain_id}\npeer: {peer_id}\naddress: {host:#x}")
}

/// The text a client signs to answer a host's challenge for a job.
pub fn client_auth_message(
    chain_id: u64,
    marketplace: Address,
    job: JobId,
    host: Address,
    nonce: &[u8; 32],
) -> String {
    format!(
        "fabstir client auth v1\nchain: {chain_id}\nmarketplace: {marketplace:#x}\njob: {job}\nhost: {host:#x}\nnonce: 0x{}",
        hex::encode(nonce)
    )
}

/// The text a client signs to fetch its job's result from a host (`host`: the peer id asked),
/// good until `expires_at` (unix seconds).
pub fn result_request_message(
    chain_id: u64,
    marketplace: Address,
    job: JobId,
    cid: &Cid,
    host: &NodePeerId,
    expires_at: u64,
) -> String {
    format!(
        "fabstir result request v1\nchain: {chain_id}\nmarketplace: {marketplace:#x}\njob: {job}\ncid: {cid}\nhost: {host}\nexpires: {expires_at}"
    )
}

/// The text a host signs over a finished job's result.
pub fn result_message(chain_id: u64, job: JobId, result_cid: &Cid, tokens_used: u64) -> String {
    format!(
        "fabstir result v1\nchain: {chain_id}\njob: {job}\ncid: {result_cid}\ntokens: {tokens_used}"
    )
}

/// The EIP-191 (`personal_sign`) digest of `message`: what [`sign_message`] signs, and what a
/// contract wallet's ERC-1271 `isValidSignature` is asked about.
pub fn message_digest(message: &str) -> H256 {
    hash_message(message)
}

/// Signs `message` with EIP-191 (`personal_sign`): 65 bytes `r || s || v`, `v` in {27, 28}.
pub fn sign_message(key: &SigningKey, message: &str) -> Result<[u8; 65]> {
    sign_digest(key, hash_message(message))
}

/// Signs a 32-byte digest as it is (no prefix; an EIP-712 digest, say): 65 bytes
/// `r || s || v`, `v` in {27, 28}.
pub fn sign_digest(key: &SigningKey, digest: H256) -> Result<[u8; 65]> {
    let (signature, recovery) = key
        .sign_prehash_recoverable(digest.as_bytes())
        .map_err(|e| Error::InvalidSignature(e.to_string()))?;
    let mut out = [0u8; 65];
    out[..64].copy_from_slice(&signature.to_bytes());
    out[64] = 27 + recovery.to_byte();
    Ok(out)
}

/// The Ethereum address of a secp256k1 key.
pub fn address_of(key: &SigningKey) -> Address {
    ethers_core::utils::secret_key_to_address(key)
}

/// A signer failed to sign (a wallet refused, a remote signer is unreachable). The cause is
/// kept as the error's source.
#[derive(Debug, thiserror::Error)]
#[error("signer: {0}")]
pub struct SignerError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

impl SignerError {
    /// Wraps the signer's error.
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(cause))
    }
}

/// The client's signer as the protocols need it: an address and EIP-191 text signing. The
/// SDK implements it over the application's wallet; a [`SigningKey`] is one.
#[async_trait]
pub trait ClientSigner: Send + Sync {
    /// The signer's Ethereum address.
    fn address(&self) -> Address;
    /// An EIP-191 (`personal_sign`) signature of `message`: 65 bytes `r || s || v`.
    async fn sign_message(&self, message: &str) -> Result<Vec<u8>, SignerError>;
    /// A signature of a 32-byte digest with no prefix (an EIP-712 digest, such as a
    /// [`Receipt`](crate::receipt::Receipt)'s): 65 bytes `r || s || v`.
    async fn sign_digest(&self, digest: H256) -> Result<Vec<u8>, SignerError>;
}

#[async_trait]
impl ClientSigner for SigningKey {
    fn address(&self) -> Address {
        address_of(self)
    }

    async fn sign_message(&self, message: &str) -> Result<Vec<u8>, SignerError> {
        Ok(sign_message(self, message)
            .map_err(SignerError::new)?
            .to_vec())
    }

    async fn sign_digest(&self, digest: H256) -> Result<Vec<u8>, SignerError> {
        Ok(sign_digest(self, digest)
            .map_err(SignerError::new)?
            .to_vec())
    }
}

/// Recovers the address that signed `message` with EIP-191. Malformed signatures (wrong
/// length, bad `v`, invalid curve values) are errors, never panics.
pub fn recover_signer(message: &str, signature: &[u8]) -> Result<Address> {
    recover_digest(hash_message(message), signature)
}

/// Recovers the signer of a 32-byte digest from a 65-byte `r || s || v` signature (`v` in
/// {0, 1, 27, 28}). Malformed signatures are errors, never panics.
pub fn recover_digest(digest: H256, signature: &[u8]) -> Result<Address> {
    if signature.len() != 65 {
        return Err(Error::InvalidSignature(format!(
            "expected 65 bytes, got {}",
            signature.len()
        )));
    }
    let v = u64::from(signature[64]);
    if !matches!(v, 0 | 1 | 27 | 28) {
        return Err(Error::InvalidSignature(format!("bad recovery id {v}")));
    }
    Signature {
        r: U256::from_big_endian(&signature[..32]),
        s: U256::from_big_endian(&signature[32..64]),
        v: if v < 27 { v + 27 } else { v },
    }
    .recover(digest)
    .map_err(|e| Error::InvalidSignature(e.to_string()))
}

/// Checks that `signature` over `message` was made by `expected`.
pub fn verify_signer(message: &str, signature: &[u8], expected: Address) -> Result<()> {
    let signer = recover_signer(message, signature)?;
    if signer == expected {
        Ok(())
    } else {
        Err(Error::InvalidSignature(format!(
            "signed by {signer:#x}, expected {expected:#x}"
        )))
    }
}

/// Why a challenge answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// The nonce was never issued, or was already used (a replay).
    #[error("unknown or already used challenge")]
    Unknown,
    /// The nonce was issued but has expired.
    #[error("challenge expired")]
    Expired,
}

/// The host's book of outstanding challenge nonces: each is single-use and expires.
///
/// The caller supplies randomness and the clock, so the book is deterministic to test; the
/// network layer gives it 32 random bytes per challenge and the current unix time.
#[derive(Debug)]
pub struct ChallengeBook {
    ttl_secs: u64,
    capacity: usize,
    outstanding: HashMap<[u8; 32], u64>,
}

impl ChallengeBook {
    /// A book whose nonces live `ttl_secs` seconds, holding at most `capacity` at once (the
    /// oldest-expiring are dropped first when full, so a flood of opens cannot grow memory).
    pub fn new(ttl_secs: u64, capacity: usize) -> Self {
        Self {
            ttl_secs,
            capacity: capacity.max(1),
            outstanding: HashMap::new(),
        }
    }

    /// Records a fresh nonce issued at `now`; returns its expiry time.
    pub fn issue(&mut self, nonce: [u8; 32], now: u64) -> u64 {
        self.outstanding.retain(|_, expiry| *expiry > now);
        while self.outstanding.len() >= self.capacity {
            let Some(oldest) = self
                .outstanding
                .iter()
                .min_by_key(|(nonce, expiry)| (**expiry, **nonce))
                .map(|(nonce, _)| *nonce)
            else {
                break;
            };
            self.outstanding.remove(&oldest);
        }
        let expiry = now.saturating_add(self.ttl_secs);
        self.outstanding.insert(nonce, expiry);
        expiry
    }

    /// Consumes a nonce answered at `now`: succeeds once, then it is gone.
    pub fn consume(&mut self, nonce: &[u8; 32], now: u64) -> Result<(), ChallengeError> {
        match self.outstanding.remove(nonce) {
            None => Err(ChallengeError::Unknown),
            Some(expiry) if now > expiry => Err(ChallengeError::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Forgets a nonce that will not be answered (its stream ended first), so that what is
    /// outstanding is only what streams still wait on: opening and dropping streams cannot push
    /// out the nonce of a client that is still signing.
    pub fn withdraw(&mut self, nonce: &[u8; 32]) {
        self.outstanding.remove(nonce);
    }

    /// Nonces outstanding now.
    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether no nonce is outstanding.
    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32].into()).unwrap()
    }

    #[test]
    fn anvil_key_zero_has_the_known_address() {
        let bytes = hex::decode("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
            .unwrap();
        let key = SigningKey::from_slice(&bytes).unwrap();
        assert_eq!(
            format!("{:#x}", address_of(&key)),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
    }

    #[test]
    fn sign_and_recover_round_trip() {
        let k = key(1);
        let peer: NodePeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            .parse()
            .unwrap();
        let msg = identity_message(31_337, &peer, address_of(&k));
        let sig = sign_message(&k, &msg).unwrap();
        assert_eq!(recover_signer(&msg, &sig).unwrap(), address_of(&k));
        verify_signer(&msg, &sig, address_of(&k)).unwrap();
        assert!(verify_signer(&msg, &sig, address_of(&key(2))).is_err());
        let other = identity_message(1, &peer, address_of(&k));
        assert_ne!(recover_signer(&other, &sig).unwrap(), address_of(&k));
    }

    #[test]
    fn messages_bind_every_field() {
        let nonce = [9u8; 32];
        let base = client_auth_message(1, Address::zero(), JobId(1), Address::zero(), &nonce);
        assert_ne!(
            base,
            client_auth_message(2, Address::zero(), JobId(1), Address::zero(), &nonce)
        );
        assert_ne!(
            base,
            client_auth_message(1, Address::zero(), JobId(2), Address::zero(), &nonce)
        );
        assert_ne!(
            base,
            client_auth_message(
                1,
                Address::zero(),
                JobId(1),
                Address::repeat_byte(1),
                &nonce
            )
        );
        assert_ne!(
            base,
            client_auth_message(
                1,
                Address::repeat_byte(1),
                JobId(1),
                Address::zero(),
                &nonce
            )
        );
        assert_ne!(
            base,
            client_auth_message(1, Address::zero(), JobId(1), Address::zero(), &[8; 32])
        );
        assert_ne!(
            result_message(1, JobId(1), &crate::cid::cid_of(b"a"), 1),
            result_message(1, JobId(1), &crate::cid::cid_of(b"a"), 2)
        );
    }

    #[test]
    fn malformed_signatures_are_errors() {
        assert!(recover_signer("m", &[]).is_err());
        assert!(recover_signer("m", &[0u8; 64]).is_err());
        let mut bad_v = [1u8; 65];
        bad_v[64] = 5;
        assert!(recover_signer("m", &bad_v).is_err());
        assert!(
            recover_signer("m", &[0u8; 65]).is_err(),
            "r = s = 0 is not a signature"
        );
    }

    #[test]
    fn challenges_are_single_use_and_expire() {
        let mut book = ChallengeBook::new(30, 100);
        let expiry = book.issue([1; 32], 1_000);
        assert_eq!(expiry, 1_030);
        assert_eq!(book.consume(&[1; 32], 1_010), Ok(()));
        assert_eq!(
            book.consume(&[1; 32], 1_011),
            Err(ChallengeError::Unknown),
            "replay"
        );
        book.issue([2; 32], 1_000);
        assert_eq!(book.consume(&[2; 32], 1_031), Err(ChallengeError::Expired));
        assert_eq!(book.consume(&[3; 32], 1_000), Err(ChallengeError::Unknown));
    }

    #[test]
    fn challenge_book_is_bounded() {
        let mut book = ChallengeBook::new(30, 3);
        for i in 0..10u8 {
            book.issue([i; 32], 1_000 + u64::from(i));
        }
        assert_eq!(book.len(), 3);
        assert_eq!(book.consume(&[0; 32], 1_010), Err(ChallengeError::Unknown));
        assert_eq!(book.consume(&[9; 32], 1_010), Ok(()));
    }

    #[test]
    fn withdrawn_nonces_make_room_without_pushing_out_others() {
        let mut book = ChallengeBook::new(30, 3);
        book.issue([0; 32], 1_000);
        for i in 1..100u8 {
            book.issue([i; 32], 1_000);
            book.withdraw(&[i; 32]);
        }
        assert_eq!(book.len(), 1);
        assert_eq!(
            book.consume(&[0; 32], 1_010),
            Ok(()),
            "the waiting nonce survives"
        );
        assert_eq!(book.consume(&[5; 32], 1_010), Err(ChallengeError::Unknown));
    }
}
