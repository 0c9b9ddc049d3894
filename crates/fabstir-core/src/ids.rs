//! Identifier newtypes: jobs, models, hosts and libp2p peers.
//!
//! Each id has one canonical text form (used in JSON, TOML, logs and the CLI) and one compact
//! binary form (used on the wire); serde picks by `is_human_readable()`.

use std::fmt;
use std::str::FromStr;

use ethers_core::types::{Address, H256, U256};
use ethers_core::utils::keccak256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// A job's on-chain id (the JobMarketplace counter; ids start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl JobId {
    /// The id as the contract's `uint256`.
    pub fn to_u256(self) -> U256 {
        U256::from(self.0)
    }

    /// Converts a contract `uint256` id; ids beyond `u64` are rejected.
    pub fn from_u256(value: U256) -> Result<Self> {
        if value > U256::from(u64::MAX) {
            return Err(Error::InvalidId {
                kind: "job id",
                reason: format!("{value} does not fit in 64 bits"),
            });
        }
        Ok(Self(value.as_u64()))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for JobId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        s.trim().parse().map(Self).map_err(|e| Error::InvalidId {
            kind: "job id",
            reason: format!("{s:?}: {e}"),
        })
    }
}

/// A model's id: 32 bytes, `keccak256` of the model's name, so that the chain, the DHT and every
/// client agree on it without a registry of names.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(pub [u8; 32]);

impl ModelId {
    /// The id of a model name: `keccak256(name)`.
    pub fn from_name(name: &str) -> Self {
        Self(keccak256(name.as_bytes()))
    }

    /// The id as the contract's `bytes32`.
    pub fn to_h256(self) -> H256 {
        H256(self.0)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<H256> for ModelId {
    fn from(value: H256) -> Self {
        Self(value.0)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelId({self})")
    }
}

impl FromStr for ModelId {
    type Err = Error;
    /// Parses the `0x`-prefixed 64-digit hex form.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidId {
            kind: "model id",
            reason,
        };
        let digits = s
            .strip_prefix("0x")
            .ok_or_else(|| invalid(format!("{s:?} must start with 0x")))?;
        let bytes = hex::decode(digits).map_err(|e| invalid(format!("{s:?}: {e}")))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid(format!("{s:?} is not 32 bytes")))?;
        Ok(Self(array))
    }
}

impl Serialize for ModelId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ModelId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// A host's Ethereum address: it pays gas, receives payment and signs its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostAddress(pub Address);

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl From<Address> for HostAddress {
    fn from(value: Address) -> Self {
        Self(value)
    }
}

/// Longest peer id accepted: an identity multihash of the largest key libp2p inlines (42
/// bytes) or a sha2-256 multihash (34 bytes), with room to spare but bounded.
const MAX_PEER_ID_LEN: usize = 128;

/// A libp2p peer id held as its multihash bytes, without depending on libp2p.
///
/// The text form is base58btc, as libp2p prints it (`12D3KooW...` for Ed25519 keys). Only
/// identity (`0x00`) and sha2-256 (`0x12`) multihashes are valid peer ids. The same bytes are
/// what the NodeRegistry stores as a host's peer id.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePeerId(Vec<u8>);

impl NodePeerId {
    /// Wraps multihash bytes after checking they are a well-formed identity or sha2-256
    /// multihash.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = bytes.into();
        let invalid = |reason: &str| Error::InvalidId {
            kind: "peer id",
            reason: reason.to_owned(),
        };
        if bytes.len() > MAX_PEER_ID_LEN {
            return Err(invalid("too long"));
        }
        let [code, len, digest @ ..] = bytes.as_slice() else {
            return Err(invalid("too short for a multihash"));
        };
        match *code {
            0x00 | 0x12 if usize::from(*len) == digest.len() && *len < 0x80 => {}
            0x00 | 0x12 => return Err(invalid("multihash length does not match")),
            _ => return Err(invalid("not an identity or sha2-256 multihash")),
        }
        if *code == 0x12 && digest.len() != 32 {
            return Err(invalid("a sha2-256 multihash has 32 bytes"));
        }
        Ok(Self(bytes))
    }

    /// The multihash bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The multihash bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Display for NodePeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).into_string())
    }
}

impl fmt::Debug for NodePeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodePeerId({self})")
    }
}

impl FromStr for NodePeerId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bytes = bs58::decode(s).into_vec().map_err(|e| Error::InvalidId {
            kind: "peer id",
            reason: format!("{s:?} is not base58: {e}"),
        })?;
        Self::from_bytes(bytes)
    }
}

impl Serialize for NodePeerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for NodePeerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let bytes = serde_bytes_vec(deserializer)?;
            Self::from_bytes(bytes).map_err(serde::de::Error::custom)
        }
    }
}

/// Deserializes a byte string written by `serialize_bytes`.
fn serde_bytes_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_is_keccak_of_name() {
        let id = ModelId::from_name("tiny-llama");
        assert_eq!(id.0, keccak256(b"tiny-llama"));
        // keccak256("") is a well-known constant; it pins the hash function.
        assert_eq!(
            ModelId::from_name("").to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn model_id_text_round_trip() {
        let id = ModelId::from_name("stories260K");
        assert_eq!(id.to_string().parse::<ModelId>().unwrap(), id);
        assert!("c5d2".parse::<ModelId>().is_err());
        assert!("0x1234".parse::<ModelId>().is_err());
        assert!("0xzz".parse::<ModelId>().is_err());
    }

    #[test]
    fn model_id_json_is_hex_and_bincode_is_32_bytes() {
        let id = ModelId::from_name("m");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ModelId>(&json).unwrap(), id);
        let bin = bincode::serialize(&id).unwrap();
        assert_eq!(bin.len(), 32);
        assert_eq!(bincode::deserialize::<ModelId>(&bin).unwrap(), id);
    }

    #[test]
    fn job_id_u256_conversion_is_checked() {
        assert_eq!(JobId::from_u256(U256::from(7)).unwrap(), JobId(7));
        assert_eq!(JobId(7).to_u256(), U256::from(7));
        assert!(JobId::from_u256(U256::from(u64::MAX) + 1).is_err());
        assert_eq!("42".parse::<JobId>().unwrap(), JobId(42));
        assert!("-1".parse::<JobId>().is_err());
    }

    #[test]
    fn peer_id_accepts_ed25519_and_sha256_forms() {
        // A real Ed25519 libp2p peer id (identity multihash of the protobuf public key).
        let text = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        let id: NodePeerId = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(id.as_bytes()[0], 0x00);
        // An RSA-style sha2-256 peer id.
        let sha = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N";
        assert_eq!(sha.parse::<NodePeerId>().unwrap().to_string(), sha);
    }

    #[test]
    fn peer_id_rejects_garbage() {
        assert!("".parse::<NodePeerId>().is_err());
        assert!("0OIl".parse::<NodePeerId>().is_err());
        assert!(NodePeerId::from_bytes(vec![0x55, 1, 0]).is_err());
        assert!(NodePeerId::from_bytes(vec![0x12, 3, 1, 2]).is_err());
        assert!(NodePeerId::from_bytes(vec![0x12, 2, 1, 2]).is_err());
        assert!(NodePeerId::from_bytes(vec![0; 500]).is_err());
    }

    #[test]
    fn peer_id_serde_forms() {
        let id: NodePeerId = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
            .parse()
            .unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<NodePeerId>(&json).unwrap(), id);
        let bin = bincode::serialize(&id).unwrap();
        assert_eq!(bincode::deserialize::<NodePeerId>(&bin).unwrap(), id);
        let mut bad = bin.clone();
        let last = bad.len() - 1;
        bad.truncate(last);
        assert!(bincode::deserialize::<NodePeerId>(&bad).is_err());
    }
}
