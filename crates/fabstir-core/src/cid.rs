//! The identifier of a job's result: CIDv1 with the raw codec (`0x55`) and a sha2-256
//! multihash, written as base32 lower (`bafkrei...`). Hosts sign and submit it, clients
//! recompute it, stores file results under it; every layer computes it here.

use multihash::Multihash;
use sha2::{Digest, Sha256};

/// The CID type (from the `cid` crate), re-exported so every layer names one version.
pub use cid::Cid;

/// Multicodec code of the raw binary codec, the only codec results are stored under.
pub const RAW_CODEC: u64 = 0x55;

/// Multicodec code of the sha2-256 hash function, the only hash results are stored under.
pub const SHA2_256_CODE: u64 = 0x12;

/// The CID of `bytes`.
pub fn cid_of(bytes: &[u8]) -> Cid {
    cid_of_digest(Sha256::digest(bytes).into())
}

/// The CID of content whose sha2-256 digest is `digest` (for content hashed as it streams).
pub fn cid_of_digest(digest: [u8; 32]) -> Cid {
    // A 32-byte digest always fits the 64-byte multihash, so `wrap` cannot fail; map the
    // impossible error to the identity of an empty digest rather than panicking.
    let hash = Multihash::<64>::wrap(SHA2_256_CODE, &digest).unwrap_or_default();
    Cid::new_v1(RAW_CODEC, hash)
}

/// Reads a CID from its text form (any multibase the `cid` crate knows).
pub fn parse_cid(text: &str) -> Result<Cid, cid::Error> {
    Cid::try_from(text)
}

/// Serde for a [`Cid`] as its text form (`#[serde(with = "fabstir_core::cid::text")]`): on
/// the wire and in JSON a CID is the string a person reads, and text that is not a CID is
/// refused when it is decoded.
pub mod text {
    use super::Cid;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes `cid` as its text form.
    pub fn serialize<S: Serializer>(cid: &Cid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(cid)
    }

    /// Reads a CID from its text form.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Cid, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_cid(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_and_whole_digests_agree() {
        let text = b"Once upon a time";
        let mut hasher = Sha256::new();
        hasher.update(&text[..4]);
        hasher.update(&text[4..]);
        assert_eq!(cid_of_digest(hasher.finalize().into()), cid_of(text));
        assert!(cid_of(text).to_string().starts_with("bafkrei"));
    }

    #[test]
    fn text_form_round_trips_and_refuses_what_is_not_a_cid() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Holder(#[serde(with = "text")] Cid);
        let cid = cid_of(b"x");
        let json = serde_json::to_string(&Holder(cid)).unwrap();
        assert_eq!(json, format!("\"{cid}\""));
        assert_eq!(serde_json::from_str::<Holder>(&json).unwrap(), Holder(cid));
        assert!(serde_json::from_str::<Holder>("\"bafkreinotacid\"").is_err());
    }
}
