//! Content identifiers: CIDv1, raw codec, sha2-256.

use cid::{Cid, Version};

use crate::{Error, Result};

pub use fabstir_core::cid::{RAW_CODEC, SHA2_256_CODE, cid_of};

/// Length of a sha2-256 digest in bytes.
const SHA2_256_LEN: usize = 32;

/// Checks that `cid` is one this crate stores: CIDv1, raw codec, sha2-256 with a 32-byte
/// digest.
pub fn check_cid(cid: &Cid) -> Result<()> {
    let reason = if cid.version() != Version::V1 {
        format!("version {:?}", cid.version())
    } else if cid.codec() != RAW_CODEC {
        format!("codec {:#x}", cid.codec())
    } else if cid.hash().code() != SHA2_256_CODE {
        format!("hash function {:#x}", cid.hash().code())
    } else if usize::from(cid.hash().size()) != SHA2_256_LEN {
        format!("a {}-byte digest", cid.hash().size())
    } else {
        return Ok(());
    };
    Err(Error::UnsupportedCid {
        cid: cid.to_string(),
        reason,
    })
}

/// Parses a CID from its string form (as found on chain or on the wire) and checks that it
/// is a CIDv1 with the raw codec and a sha2-256 multihash.
pub fn parse_cid(input: &str) -> Result<Cid> {
    let cid = Cid::try_from(input).map_err(|source| Error::InvalidCid {
        input: input.to_owned(),
        source,
    })?;
    check_cid(&cid)?;
    Ok(cid)
}

/// Checks that `bytes` hash to `expected`.
///
/// Fails with [`Error::UnsupportedCid`] if `expected` is not a raw sha2-256 CIDv1 and with
/// [`Error::HashMismatch`] if the bytes differ.
pub fn verify(expected: &Cid, bytes: &[u8]) -> Result<()> {
    check_cid(expected)?;
    let actual = cid_of(bytes);
    if actual != *expected {
        return Err(Error::HashMismatch {
            expected: Box::new(*expected),
            actual: Box::new(actual),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use multihash::Multihash;
    use sha2::{Digest, Sha256};

    use super::*;

    const EMPTY: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    const HELLO: &str = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";

    #[test]
    fn well_known_vectors() {
        assert_eq!(cid_of(b"").to_string(), EMPTY);
        assert_eq!(cid_of(b"hello world").to_string(), HELLO);
    }

    #[test]
    fn binary_layout_is_v1_raw_sha256() {
        let cid = cid_of(b"hello world");
        let bytes = cid.to_bytes();
        // version 1, raw codec, sha2-256, 32-byte digest, then the digest itself.
        assert_eq!(&bytes[..4], &[0x01, 0x55, 0x12, 0x20]);
        assert_eq!(&bytes[4..], &Sha256::digest(b"hello world")[..]);
    }

    #[test]
    fn parse_round_trips_and_checks() -> Result<()> {
        let cid = parse_cid(HELLO)?;
        assert_eq!(cid, cid_of(b"hello world"));
        assert!(matches!(
            parse_cid("not a cid"),
            Err(Error::InvalidCid { .. })
        ));
        // The same digest under the dag-pb codec is a valid CID, but not ours.
        let dag_pb = Cid::new_v1(0x70, *cid.hash());
        assert!(matches!(
            parse_cid(&dag_pb.to_string()),
            Err(Error::UnsupportedCid { .. })
        ));
        let v0 = Cid::new_v0(*cid.hash()).map_err(|source| Error::InvalidCid {
            input: String::new(),
            source,
        })?;
        assert!(matches!(check_cid(&v0), Err(Error::UnsupportedCid { .. })));
        let identity = Multihash::<64>::wrap(0x00, b"hello").unwrap_or_default();
        assert!(matches!(
            check_cid(&Cid::new_v1(RAW_CODEC, identity)),
            Err(Error::UnsupportedCid { .. })
        ));
        Ok(())
    }

    #[test]
    fn verify_detects_mismatch() {
        let cid = cid_of(b"hello world");
        assert!(verify(&cid, b"hello world").is_ok());
        match verify(&cid, b"hello world!") {
            Err(Error::HashMismatch { expected, actual }) => {
                assert_eq!(*expected, cid);
                assert_eq!(*actual, cid_of(b"hello world!"));
            }
            other => panic!("expected a hash mismatch, got {other:?}"),
        }
    }
}
