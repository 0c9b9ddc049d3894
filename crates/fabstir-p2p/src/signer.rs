//! The client's signer as the network layer needs it. The port is declared in
//! `fabstir-core` ([`fabstir_core::auth::ClientSigner`]) so that every layer signs through
//! the same trait; it is re-exported here because [`Network::open_stream`](crate::Network)
//! takes one.

pub use fabstir_core::auth::ClientSigner;

#[cfg(test)]
mod tests {
    use ethers_core::k256::ecdsa::SigningKey;
    use fabstir_core::auth;

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
