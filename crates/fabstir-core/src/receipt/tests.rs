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

/// The session vectors of `docs/PROTOCOL.md`, section 9 (computed independently with js-sha3):
/// session `5 << 32 | 1`, the text prompt "Once upon a time", token "Once", then the
/// conversation [system "Be brief.", user "Hi"], tokens "" and " upon".
#[test]
fn the_session_test_vectors_hold() {
    use crate::wire::{ChatMessage, ChatRole, PromptInput};
    let hex32 = |h: H256| format!("{h:#x}");
    let session = JobId((5 << 32) | 1);
    let mut t = Transcript::session(session);
    assert_eq!(
        hex32(t.hash()),
        "0x99bc9d4a08b9672ac346013c2b1909404ee6764172b6afd038884ca754a47dfb"
    );
    t.push_prompt(PromptInput::Text("Once upon a time".into()).hash());
    assert_eq!(
        hex32(t.hash()),
        "0xbeee75c122c966cc78c60fbf1dbfe14c4b9c4e8eb666341534aaee08f76e47bb"
    );
    t.push(9038, "Once");
    let after_first = t;
    let chat = PromptInput::Chat(vec![
        ChatMessage::new(ChatRole::System, "Be brief."),
        ChatMessage::new(ChatRole::User, "Hi"),
    ]);
    assert_eq!(
        hex32(chat.hash()),
        "0x1ff848bc0789f075ee762d0e2ccd1008d8581e955b204951972196cc4df966cc"
    );
    t.push_prompt(chat.hash());
    assert_eq!(
        hex32(t.hash()),
        "0xb42da80f11412ad2e586cdbbb548e101539c730bf8e29bf523236b4b7849bddc"
    );
    t.push(0, "");
    t.push(2501, " upon");
    assert_eq!(
        hex32(t.hash()),
        "0x562e6e0819cc04866cc3ba6b77c76da89b7088d80fb4a48a81ff855ff2712bd5"
    );
    assert_eq!(t.counted(), 2);
    let receipt = t.receipt(session);
    assert_eq!(
        hex32(H256(receipt.struct_hash())),
        "0xf5bbc24696992ee7be586101ed4c9ab36940e03dc4b25daa3d5810741e9150ee"
    );
    assert_eq!(
        hex32(receipt.digest(&domain())),
        "0x01482819a7b81f64d9b3e1bb93e4e5e50105e954c167d6f8dec8a16f471a2486"
    );
    let signature = receipt.sign(&domain(), &key()).unwrap();
    assert_eq!(
        receipt.signer(&domain(), &signature).unwrap(),
        crate::auth::address_of(&key())
    );

    // A stream that resumes from the first prompt's receipt continues the same transcript.
    let mut resumed = Transcript::resume(after_first.hash(), after_first.counted());
    resumed.push_prompt(chat.hash());
    resumed.push(0, "");
    resumed.push(2501, " upon");
    assert_eq!((resumed.hash(), resumed.counted()), (t.hash(), t.counted()));
    assert_eq!(
        resumed.delivered(),
        2,
        "delivered counts from the resume point"
    );
    // A prompt step is not a token step.
    let mut as_token = after_first;
    as_token.push(u32::MAX, "");
    assert_ne!(as_token.hash(), {
        let mut p = after_first;
        p.push_prompt(H256::zero());
        p.hash()
    });
}
