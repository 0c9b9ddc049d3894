use super::*;
use crate::node::tests::caps;
use proptest::prelude::*;

fn samples() -> (
    Vec<NegotiationRequest>,
    Vec<NegotiationResponse>,
    Vec<ClientFrame>,
    Vec<HostFrame>,
) {
    let quote_request = QuoteRequest {
        model: ModelId::from_name("stories"),
        max_tokens: 64,
        token: Address::repeat_byte(1),
        offered_price_per_token: TokenAmount::from_base_units(1_000u64),
        prompt_hash: H256::repeat_byte(2),
        client: Address::repeat_byte(3),
    };
    let jobs = vec![
        NegotiationRequest::Quote(quote_request),
        NegotiationRequest::Posted { job: JobId(9) },
    ];
    let responses = vec![
        NegotiationResponse::Quote(Quote {
            host: Address::repeat_byte(4),
            model: ModelId::from_name("stories"),
            price_per_token: TokenAmount::from_base_units(900u64),
            token: Address::repeat_byte(1),
            max_tokens: 64,
            valid_until: 1_700_000_000,
            credit_window: 512,
        }),
        NegotiationResponse::Accepted { job: JobId(9) },
        NegotiationResponse::Rejected {
            reason: RejectReason::PriceTooLow,
            message: "need 1000".into(),
        },
    ];
    let client = vec![
        ClientFrame::Auth(AuthResponse {
            job: JobId(9),
            nonce: [5; 32],
            signature: vec![1; 65],
        }),
        ClientFrame::Prompt(PromptFrame {
            prompt: "Once upon a time".into(),
            temperature_milli: 800,
            top_p_milli: 900,
            seed: 42,
        }),
        ClientFrame::Cancel,
        ClientFrame::Receipt(crate::receipt::SignedReceipt {
            tokens: 12,
            transcript: H256::repeat_byte(3),
            signature: vec![2; 65],
        }),
        ClientFrame::SessionPrompt(SessionPrompt {
            input: PromptInput::Chat(vec![
                ChatMessage::new(ChatRole::System, "Be brief."),
                ChatMessage::new(ChatRole::User, "Hi"),
            ]),
            max_tokens: 32,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 1,
        }),
        ClientFrame::SessionPrompt(SessionPrompt {
            input: PromptInput::Text("Once".into()),
            max_tokens: 1,
            temperature_milli: 700,
            top_p_milli: 900,
            seed: 2,
        }),
        ClientFrame::EndSession,
    ];
    let host = vec![
        HostFrame::Challenge(AuthChallenge {
            nonce: [6; 32],
            expires_at: 1,
            host: Address::repeat_byte(4),
            credit_window: 64,
        }),
        HostFrame::Authenticated,
        HostFrame::Tokens(TokenBatch {
            first_index: 3,
            tokens: vec![
                StreamToken {
                    id: 1,
                    text: "a".into(),
                },
                StreamToken {
                    id: 2,
                    text: "é".into(),
                },
            ],
        }),
        HostFrame::Done(StreamDone {
            result_cid: crate::cid::parse_cid(
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            )
            .unwrap(),
            tokens_used: 5,
            signature: vec![7; 65],
        }),
        HostFrame::Error(StreamError {
            code: StreamErrorCode::PromptMismatch,
            message: "hash differs".into(),
        }),
        HostFrame::SessionReady(SessionReady {
            resume: Some(crate::receipt::SignedReceipt {
                tokens: 9,
                transcript: H256::repeat_byte(4),
                signature: vec![3; 65],
            }),
            available_tokens: 91,
        }),
        HostFrame::SessionReady(SessionReady {
            resume: None,
            available_tokens: 0,
        }),
        HostFrame::PromptDone(PromptDone {
            tokens: 12,
            finish: FinishReason::Deposit,
        }),
        HostFrame::SessionEnding(SessionEnding { tokens: 9 }),
        HostFrame::Error(StreamError {
            code: StreamErrorCode::SessionBusy,
            message: "one at a time".into(),
        }),
    ];
    (jobs, responses, client, host)
}

fn round_trip<T: WireMessage + PartialEq + std::fmt::Debug>(message: &T) {
    let bytes = encode(message).unwrap();
    assert_eq!(&decode::<T>(&bytes).unwrap(), message);
    let frame = encode_frame(message).unwrap();
    let mut decoder = FrameDecoder::<T>::new();
    // Byte by byte: the decoder must wait for the whole frame.
    for (i, byte) in frame.iter().enumerate() {
        decoder.extend(&[*byte]);
        let next = decoder.next_message().unwrap();
        assert_eq!(next.is_some(), i + 1 == frame.len());
        if let Some(decoded) = next {
            assert_eq!(&decoded, message);
        }
    }
    assert_eq!(decoder.pending(), 0);
}

#[test]
fn every_message_round_trips() {
    let (jobs, responses, client, host) = samples();
    jobs.iter().for_each(round_trip);
    responses.iter().for_each(round_trip);
    client.iter().for_each(round_trip);
    host.iter().for_each(round_trip);
    round_trip(&CapabilitiesRequest { token: None });
    round_trip(&CapabilitiesResponse {
        capabilities: caps("m", 5),
        chain_id: 31_337,
        identity_signature: vec![1; 65],
    });
}

#[test]
fn several_frames_in_one_read() {
    let (_, _, _, host) = samples();
    let bytes: Vec<u8> = host.iter().flat_map(|m| encode_frame(m).unwrap()).collect();
    let mut decoder = FrameDecoder::<HostFrame>::new();
    decoder.extend(&bytes);
    let mut decoded = Vec::new();
    while let Some(m) = decoder.next_message().unwrap() {
        decoded.push(m);
    }
    assert_eq!(decoded, host);
}

#[test]
fn truncated_messages_are_errors() {
    let (jobs, ..) = samples();
    let bytes = encode(&jobs[0]).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            decode::<NegotiationRequest>(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(matches!(
        decode::<NegotiationRequest>(&extra),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn oversized_messages_are_refused_both_ways() {
    let huge = ClientFrame::Prompt(PromptFrame {
        prompt: "x".repeat(MAX_FRAME_LEN),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
    });
    assert!(matches!(encode(&huge), Err(Error::Oversized { .. })));
    let big = vec![0u8; NegotiationRequest::MAX_SIZE + 1];
    assert!(matches!(
        decode::<NegotiationRequest>(&big),
        Err(Error::Oversized { .. })
    ));
    // A frame header announcing more than the limit is refused before any allocation.
    let mut decoder = FrameDecoder::<HostFrame>::new();
    decoder.extend(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decoder.next_message(),
        Err(Error::Oversized { .. })
    ));
    assert!(matches!(frame_len([0; 4], 10), Err(Error::Malformed(_))));
}

#[test]
fn a_length_prefix_inside_a_message_cannot_force_allocation() {
    // Version 1, `Tokens` variant, first_index 0, then a vector length of 2^60.
    let mut bytes = encode(&HostFrame::Authenticated).unwrap();
    bytes.truncate(1);
    bytes.push(2); // HostFrame::Tokens
    bytes.push(0); // first_index
    bytes.push(0xfd); // varint u64 marker
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(decode::<HostFrame>(&bytes).is_err());
}

#[test]
fn other_versions_are_named() {
    let mut bytes = encode(&ClientFrame::Cancel).unwrap();
    bytes[0] = 2;
    assert!(matches!(
        decode::<ClientFrame>(&bytes),
        Err(Error::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    ));
}

#[test]
fn batch_text_concatenates() {
    let batch = TokenBatch {
        first_index: 0,
        tokens: vec![
            StreamToken {
                id: 1,
                text: "Hel".into(),
            },
            StreamToken {
                id: 2,
                text: "lo".into(),
            },
        ],
    };
    assert_eq!(batch.text(), "Hello");
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<NegotiationRequest>(&bytes);
        let _ = decode::<NegotiationResponse>(&bytes);
        let _ = decode::<ClientFrame>(&bytes);
        let _ = decode::<HostFrame>(&bytes);
        let _ = decode::<CapabilitiesResponse>(&bytes);
        let mut decoder = FrameDecoder::<HostFrame>::new();
        decoder.extend(&bytes);
        while let Ok(Some(_)) = decoder.next_message() {}
    }

    #[test]
    fn token_batches_round_trip(first in any::<u64>(), tokens in prop::collection::vec((any::<u32>(), "\\PC{0,8}"), 0..64)) {
        let batch = HostFrame::Tokens(TokenBatch {
            first_index: first,
            tokens: tokens.into_iter().map(|(id, text)| StreamToken { id, text }).collect(),
        });
        let frame = encode_frame(&batch).unwrap();
        let mut decoder = FrameDecoder::<HostFrame>::new();
        decoder.extend(&frame);
        prop_assert_eq!(decoder.next_message().unwrap(), Some(batch));
    }

    #[test]
    fn corrupted_frames_never_panic(flip in any::<usize>(), value in any::<u8>()) {
        let (_, _, _, host) = samples();
        let mut frame = encode_frame(&host[2]).unwrap();
        let i = flip % frame.len();
        frame[i] = value;
        let mut decoder = FrameDecoder::<HostFrame>::new();
        decoder.extend(&frame);
        let _ = decoder.next_message();
    }
}
