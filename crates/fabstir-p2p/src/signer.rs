//! The client's signer as the network layer needs it: an address and EIP-191 text signing.
//! The SDK implements [`ClientSigner`] over its own signer; a k256 [`SigningKey`] is one.

use async_trait::async_trait;
use ethers_core::k256::ecdsa::SigningKey;
use fabstir_core::auth;
use fabstir_core::primitives::Address;

use crate::Result;

/// Signs the client's answer to a host's challenge.
#[async_trait]
pub trait ClientSigner: Send + Sync {
    /// The signer's Ethereum address.
    fn address(&self) -> Address;
    /// An EIP-191 (`personal_sign`) signature of `message`: 65 bytes `r || s || v`.
    async fn sign_message(&self, message: &str) -> Result<Vec<u8>>;
}

#[async_trait]
impl ClientSigner for SigningKey {
    fn address(&self) -> Address {
        auth::address_of(self)
    }

    async fn sign_message(&self, message: &str) -> Result<Vec<u8>> {
        Ok(auth::sign_message(self, message)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signing_key_signs_recoverably() {
        let key = SigningKey::from_bytes(&[3u8; 32].into()).unwrap();
        let sig = ClientSigner::sign_message(&key, "hello").await.unwrap();
        assert_eq!(
            auth::recover_signer("hello", &sig).unwrap(),
            ClientSigner::address(&key)
        );
    }
}
