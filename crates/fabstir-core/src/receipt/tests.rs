use ethers_core::types::transaction::eip712::{Eip712, TypedData};

use super::*;

/// The vectors' signer: the well-known test key `0x4c0883a6...2318`.
fn key() -> SigningKey {
    let bytes =
        hex::decode("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318").unwrap();
    SigningKey::from_slice(&bytes).unwrap()
}

fn domain() -> ReceiptDomain {
    ReceiptDomain {
        chain_id: 31_337,
        marketplace: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
            .parse()
            .unwrap(),
    }
}

/// The vector transcript: job 7, the prompt "Once upon a time", tokens "Once", "" and " upon".
fn transcript() -> Transcript {
    let mut t = Transcript::new(JobId(7), H256(keccak256("Once upon a time")));
    t.push(9038, "Once");
    t.push(0, "");
    t.push(2501, " upon");
    t
}

/// The test vectors of `docs/PROTOCOL.md`, section "Receipts".
#[test]
fn the_protocol_test_vectors_hold() {
    let hex32 = |h: H256| format!("{h:#x}");
    let start = Transcript::new(JobId(7), H256(keccak256("Once upon a time")));
    assert_eq!(
        hex32(start.hash()),
        "0x7092f3e4807f90ee21439305ea289d4efa6fe36c0f80e16f650a247017e4bf1b"
    );
    let t = transcript();
    assert_eq!(
        hex32(t.hash()),
        "0xddd308d3f987b09d1b5d643cf2312696040d99971f0a1168a13f7e12343f7625"
    );
    let r = t.receipt(JobId(7));
    assert_eq!(r.tokens, 2);
    assert_eq!(
        hex::encode(domain().separator()),
        "1243ea619897cd045c00bd7f979949d46bf34f85ceeab0d37098150a5181471e"
    );
    assert_eq!(
        hex::encode(r.struct_hash()),
        "f8bb51b4ecd96afcf0bf48adf0766fd5afaa5ab0b2fc270922be948129c245c1"
    );
    assert_eq!(
        hex32(r.digest(&domain())),
        "0x0d9015de7c6670a73a2ceff02a956fa475262943c0a68a908b3e2cd7153c2204"
    );
    assert_eq!(
        hex::encode(r.sign(&domain(), &key()).unwrap()),
        "b7bf8faa019729fcacbe4ccdbb6cfcfa7310fa81b6447e9e0e51057a5744498c\
         69332463d1bfba64d8fd5528bd9ada921eee0134c8d12ad8ed6890e7669015fe1b"
    );
    assert_eq!(
        format!("{:#x}", address_of_key()),
        "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
    );
}

fn address_of_key() -> Address {
    crate::auth::address_of(&key())
}

/// The digest equals what a generic EIP-712 implementation (ethers' typed-data JSON encoder)
/// computes for the same domain and message, so the hand-written encoding is the standard.
#[test]
fn the_digest_is_standard_eip712() {
    let r = transcript().receipt(JobId(7));
    let typed: TypedData = serde_json::from_value(serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Receipt": [
                {"name": "jobId", "type": "uint256"},
                {"name": "tokens", "type": "uint64"},
                {"name": "transcript", "type": "bytes32"}
            ]
        },
        "primaryType": "Receipt",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": 31_337,
            "verifyingContract": domain().marketplace
        },
        "message": {
            "jobId": 7,
            "tokens": r.tokens,
            "transcript": r.transcript
        }
    }))
    .unwrap();
    assert_eq!(typed.encode_eip712().unwrap(), r.digest(&domain()).0);
}

#[test]
fn empty_tokens_are_hashed_but_not_counted() {
    let t = transcript();
    assert_eq!(t.counted(), 2);
    assert_eq!(t.delivered(), 3);
    let mut without = Transcript::new(JobId(7), H256(keccak256("Once upon a time")));
    without.push(9038, "Once");
    without.push(2501, " upon");
    assert_ne!(
        without.hash(),
        t.hash(),
        "the empty token is in the transcript"
    );
    assert_eq!(without.counted(), t.counted());
}

#[test]
fn signatures_recover_and_bind_every_field() {
    let (domain, key) = (domain(), key());
    let r = transcript().receipt(JobId(7));
    let signature = r.sign(&domain, &key).unwrap();
    assert_eq!(r.signer(&domain, &signature).unwrap(), address_of_key());
    let others = [
        Receipt { job: JobId(8), ..r },
        Receipt {
            tokens: r.tokens + 1,
            ..r
        },
        Receipt {
            transcript: H256::repeat_byte(1),
            ..r
        },
    ];
    for other in others {
        assert_ne!(other.signer(&domain, &signature).unwrap(), address_of_key());
    }
    let other_chain = ReceiptDomain {
        chain_id: 1,
        ..domain
    };
    let other_contract = ReceiptDomain {
        marketplace: Address::repeat_byte(9),
        ..domain
    };
    for d in [other_chain, other_contract] {
        assert_ne!(r.signer(&d, &signature).unwrap(), address_of_key());
    }
    assert!(r.signer(&domain, &signature[..64]).is_err());
    let mut bad_v = signature;
    bad_v[64] = 5;
    assert!(r.signer(&domain, &bad_v).is_err());
}
