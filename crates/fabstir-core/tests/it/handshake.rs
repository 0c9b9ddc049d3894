use fabstir_core::auth::{self, ChallengeBook, ChallengeError, SigningKey};
use fabstir_core::node::TokenPrice;
use fabstir_core::primitives::{Address, keccak256};
use fabstir_core::wire::{
    AuthChallenge, AuthResponse, CapabilitiesResponse, ClientFrame, FrameDecoder, HostFrame,
    PromptFrame, StreamDone, StreamToken, TokenBatch, decode, encode, encode_frame,
};
use fabstir_core::{
    JobId, JobState, ModelId, NodeCapabilities, NodePeerId, PaymentToken, TokenAmount,
};

const CHAIN: u64 = 31_337;

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32].into()).unwrap()
}

fn peer() -> NodePeerId {
    "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        .parse()
        .unwrap()
}

/// A host advertises signed capabilities; a client decodes them from bytes and checks that
/// the Ethereum address vouches for the peer id.
#[test]
fn signed_capabilities_survive_the_wire_and_verify() {
    let host_key = key(1);
    let host = auth::address_of(&host_key);
    let usdc = PaymentToken::erc20(Address::repeat_byte(9), "USDC", 6);
    let capabilities = NodeCapabilities {
        peer_id: peer(),
        eth_address: host,
        models: vec![ModelId::from_name("stories260K")],
        prices: vec![TokenPrice {
            token: usdc.address(),
            price_per_token: usdc.parse_amount("0.0001").unwrap(),
        }],
        max_tokens: 256,
        current_load: 0,
        max_concurrent: 2,
        queue_depth: 0,
        version: "fabstir-node/0.1.0".into(),
    };
    let message = auth::identity_message(CHAIN, &capabilities.peer_id, host);
    let response = CapabilitiesResponse {
        capabilities,
        chain_id: CHAIN,
        identity_signature: auth::sign_message(&host_key, &message).unwrap().to_vec(),
    };
    let received: CapabilitiesResponse = decode(&encode(&response).unwrap()).unwrap();
    let caps = &received.capabilities;
    let text = auth::identity_message(received.chain_id, &caps.peer_id, caps.eth_address);
    auth::verify_signer(&text, &received.identity_signature, caps.eth_address).unwrap();
    assert_eq!(
        caps.price_for(usdc.address()),
        Some(TokenAmount::from_base_units(100u64))
    );

    // Someone else's key cannot vouch for the host's address.
    let forged = auth::sign_message(&key(2), &text).unwrap();
    assert!(auth::verify_signer(&text, &forged, caps.eth_address).is_err());
}

/// The stream handshake as both sides run it: challenge, signed answer, single-use nonce,
/// prompt checked against the on-chain hash, tokens, a signed final frame.
#[test]
fn stream_handshake_end_to_end() {
    let marketplace = Address::repeat_byte(0xaa);
    let host_key = key(1);
    let host = auth::address_of(&host_key);
    let client_key = key(3);
    let client = auth::address_of(&client_key);
    let job = JobId(7);
    let prompt = "Once upon a time";
    let on_chain_prompt_hash = keccak256(prompt.as_bytes());

    // Host: issue a challenge.
    let mut book = ChallengeBook::new(30, 16);
    let nonce = [42u8; 32];
    let expires_at = book.issue(nonce, 1_000);
    let challenge = encode_frame(&HostFrame::Challenge(AuthChallenge {
        nonce,
        expires_at,
        host,
        credit_window: 512,
    }))
    .unwrap();

    // Client: read the challenge, answer it.
    let mut from_host = FrameDecoder::<HostFrame>::new();
    from_host.extend(&challenge);
    let Some(HostFrame::Challenge(c)) = from_host.next_message().unwrap() else {
        panic!("expected a challenge");
    };
    let text = auth::client_auth_message(CHAIN, marketplace, job, c.host, &c.nonce);
    let answer = ClientFrame::Auth(AuthResponse {
        job,
        nonce: c.nonce,
        signature: auth::sign_message(&client_key, &text).unwrap().to_vec(),
    });
    let prompt_frame = ClientFrame::Prompt(PromptFrame {
        prompt: prompt.into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    });
    let mut bytes = encode_frame(&answer).unwrap();
    bytes.extend(encode_frame(&prompt_frame).unwrap());

    // Host: verify the answer before looking at the prompt.
    let mut from_client = FrameDecoder::<ClientFrame>::new();
    from_client.extend(&bytes);
    let Some(ClientFrame::Auth(auth_response)) = from_client.next_message().unwrap() else {
        panic!("expected auth first");
    };
    book.consume(&auth_response.nonce, 1_010).unwrap();
    let text = auth::client_auth_message(
        CHAIN,
        marketplace,
        auth_response.job,
        host,
        &auth_response.nonce,
    );
    assert_eq!(
        auth::recover_signer(&text, &auth_response.signature).unwrap(),
        client
    );
    assert_eq!(
        book.consume(&auth_response.nonce, 1_011),
        Err(ChallengeError::Unknown),
        "the same answer cannot be replayed"
    );
    let Some(ClientFrame::Prompt(p)) = from_client.next_message().unwrap() else {
        panic!("expected the prompt");
    };
    assert_eq!(keccak256(p.prompt.as_bytes()), on_chain_prompt_hash);

    // Host streams two batches and a signed final frame; the client reassembles them.
    let batches = [
        TokenBatch {
            first_index: 0,
            tokens: vec![StreamToken {
                id: 1,
                text: " Once".into(),
            }],
        },
        TokenBatch {
            first_index: 1,
            tokens: vec![
                StreamToken {
                    id: 2,
                    text: " there".into(),
                },
                StreamToken {
                    id: 3,
                    text: " was".into(),
                },
            ],
        },
    ];
    let cid = fabstir_core::cid::cid_of(b"Once upon a time, there was");
    let done = StreamDone {
        result_cid: cid,
        tokens_used: 3,
        signature: auth::sign_message(&host_key, &auth::result_message(CHAIN, job, &cid, 3))
            .unwrap()
            .to_vec(),
    };
    let mut wire = Vec::new();
    for b in &batches {
        wire.extend(encode_frame(&HostFrame::Tokens(b.clone())).unwrap());
    }
    wire.extend(encode_frame(&HostFrame::Done(done)).unwrap());
    from_host.extend(&wire);
    let mut text = String::new();
    let mut next_index = 0;
    let mut state = JobState::Claimed.transition(JobState::Processing).unwrap();
    loop {
        match from_host.next_message().unwrap() {
            Some(HostFrame::Tokens(batch)) => {
                assert_eq!(batch.first_index, next_index, "tokens arrive in order");
                next_index += batch.tokens.len() as u64;
                text.push_str(&batch.text());
                if state == JobState::Processing {
                    state = state.transition(JobState::Streaming).unwrap();
                }
            }
            Some(HostFrame::Done(d)) => {
                assert_eq!(d.tokens_used, next_index);
                let signed = auth::result_message(CHAIN, job, &d.result_cid, d.tokens_used);
                auth::verify_signer(&signed, &d.signature, host).unwrap();
                state = state.transition(JobState::Completed).unwrap();
                break;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(text, " Once there was");
    assert_eq!(state, JobState::Completed);
}

/// A client answering with the wrong key is found out.
#[test]
fn wrong_client_key_is_detected() {
    let marketplace = Address::repeat_byte(0xaa);
    let host = auth::address_of(&key(1));
    let real_client = auth::address_of(&key(3));
    let nonce = [1u8; 32];
    let text = auth::client_auth_message(CHAIN, marketplace, JobId(1), host, &nonce);
    let signature = auth::sign_message(&key(4), &text).unwrap();
    assert_ne!(
        auth::recover_signer(&text, &signature).unwrap(),
        real_client
    );
    assert!(auth::verify_signer(&text, &signature, real_client).is_err());
}
