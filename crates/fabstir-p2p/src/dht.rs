//! DHT keys of the Fabstir network.

use fabstir_core::ModelId;
use libp2p::kad::RecordKey;
use sha2::{Digest, Sha256};

/// The Kademlia provider key of a model: the sha2-256 multihash of the model id's 32 bytes,
/// `0x12 0x20 || sha256(model_id)` (the multihash a CIDv1 raw of those bytes carries).
pub fn provider_key(model: &ModelId) -> RecordKey {
    RecordKey::new(&provider_key_bytes(model))
}

/// The bytes of [`provider_key`].
pub fn provider_key_bytes(model: &ModelId) -> Vec<u8> {
    let mut key = Vec::with_capacity(34);
    key.extend_from_slice(&[0x12, 0x20]);
    key.extend_from_slice(&Sha256::digest(model.as_bytes()));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn provider_keys_are_sha256_multihashes_of_the_model_id() {
        // sha256 of 32 zero bytes is a well-known constant.
        assert_eq!(
            hex(&provider_key_bytes(&ModelId([0; 32]))),
            "122066687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        // The model named "" (id keccak256("") = 0xc5d2...a470).
        let empty = ModelId::from_name("");
        assert_eq!(
            hex(provider_key(&empty).as_ref()),
            "12201f22e1c3d29dce0921a51fc348c4d57761f490ad4891a67ab97c0455dfe2c184"
        );
    }
}
