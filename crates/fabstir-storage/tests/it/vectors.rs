//! Well-known CID vectors, checked against an independent computation.

use fabstir_storage::{cid_of, parse_cid};

#[test]
fn empty_and_hello_world() -> crate::TestResult {
    let empty = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let hello = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e";
    assert_eq!(cid_of(b"").to_string(), empty);
    assert_eq!(cid_of(b"hello world").to_string(), hello);
    assert_eq!(parse_cid(empty)?, cid_of(b""));
    // The on-chain form is the UTF-8 string; it parses back to the same CID.
    let on_chain = cid_of(b"hello world").to_string().into_bytes();
    assert_eq!(
        parse_cid(std::str::from_utf8(&on_chain)?)?,
        cid_of(b"hello world")
    );
    Ok(())
}

#[test]
fn matches_manual_multibase() {
    // sha2-256 digest of "hello world", as printed by `sha256sum`.
    let digest = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend(
        (0..digest.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(digest.get(i..i + 2)?, 16).ok()),
    );
    assert_eq!(bytes.len(), 36);
    assert_eq!(
        cid_of(b"hello world").to_string(),
        format!("b{}", base32_lower(&bytes))
    );
}

/// RFC 4648 base32, lower case, no padding: multibase prefix `b`.
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}
