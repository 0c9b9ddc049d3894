//! Writes a seed corpus of valid messages into `fuzz/seeds/<target>/`, so that fuzzing starts
//! from every message type and variant rather than from nothing. Run it from `fuzz/` with
//! `cargo +nightly run --example seeds` after changing the wire types; `cargo xtask fuzz` passes
//! the seeds to each target next to its own corpus.

use std::path::Path;

use fabstir_core::node::{NodeCapabilities, TokenPrice};
use fabstir_core::primitives::{Address, H256};
use fabstir_core::wire::{
    self, AuthChallenge, AuthResponse, CapabilitiesRequest, CapabilitiesResponse, ClientFrame,
    HostFrame, NegotiationRequest, NegotiationResponse, PromptFrame, Quote, QuoteRequest, RejectReason, StreamDone,
    StreamError, StreamErrorCode, StreamToken, TokenBatch,
};
use fabstir_core::{JobId, ModelId, TokenAmount};

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = ModelId::from_name("stories");
    let caps = NodeCapabilities {
        peer_id: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA".parse()?,
        eth_address: Address::repeat_byte(7),
        models: vec![model],
        prices: vec![TokenPrice {
            token: Address::zero(),
            price_per_token: TokenAmount::from_base_units(1_000u64),
        }],
        max_tokens: 512,
        current_load: 1,
        max_concurrent: 4,
        queue_depth: 0,
        version: "0.1.0".into(),
    };
    let client = [
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
    ];
    let host = [
        HostFrame::Challenge(AuthChallenge {
            nonce: [6; 32],
            expires_at: 1_700_000_000,
            host: Address::repeat_byte(4),
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
            result_cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into(),
            tokens_used: 5,
            signature: vec![7; 65],
        }),
        HostFrame::Error(StreamError {
            code: StreamErrorCode::PromptMismatch,
            message: "hash differs".into(),
        }),
    ];
    let mut messages: Seeds = vec![
        (
            "caps-request-none",
            wire::encode(&CapabilitiesRequest { token: None })?,
        ),
        (
            "caps-request-token",
            wire::encode(&CapabilitiesRequest {
                token: Some(Address::repeat_byte(1)),
            })?,
        ),
        (
            "caps-response",
            wire::encode(&CapabilitiesResponse {
                capabilities: caps,
                chain_id: 31_337,
                identity_signature: vec![1; 65],
            })?,
        ),
        (
            "job-quote",
            wire::encode(&NegotiationRequest::Quote(QuoteRequest {
                model,
                max_tokens: 64,
                token: Address::repeat_byte(1),
                offered_price_per_token: TokenAmount::from_base_units(1_000u64),
                prompt_hash: H256::repeat_byte(2),
                client: Address::repeat_byte(3),
            }))?,
        ),
        (
            "job-posted",
            wire::encode(&NegotiationRequest::Posted { job: JobId(9) })?,
        ),
        (
            "response-quote",
            wire::encode(&NegotiationResponse::Quote(Quote {
                host: Address::repeat_byte(4),
                model,
                price_per_token: TokenAmount::from_base_units(900u64),
                token: Address::repeat_byte(1),
                max_tokens: 64,
                valid_until: 1_700_000_000,
            }))?,
        ),
        (
            "response-accepted",
            wire::encode(&NegotiationResponse::Accepted { job: JobId(9) })?,
        ),
        (
            "response-rejected",
            wire::encode(&NegotiationResponse::Rejected {
                reason: RejectReason::PriceTooLow,
                message: "need 1000".into(),
            })?,
        ),
    ];
    let names = ["auth", "prompt", "cancel"];
    for (name, frame) in names.into_iter().zip(&client) {
        messages.push((name, wire::encode(frame)?));
    }
    let names = ["challenge", "authenticated", "tokens", "done", "error"];
    for (name, frame) in names.into_iter().zip(&host) {
        messages.push((name, wire::encode(frame)?));
    }

    // Frame decoder inputs: no cuts (first byte 0), then a whole exchange in frames; and the
    // same split into 3-byte chunks.
    let mut client_stream = Vec::new();
    for frame in &client {
        client_stream.extend(wire::encode_frame(frame)?);
    }
    let mut host_stream = Vec::new();
    for frame in &host {
        host_stream.extend(wire::encode_frame(frame)?);
    }
    let mut streams: Seeds = Vec::new();
    for (name, stream) in [
        ("client-stream", client_stream),
        ("host-stream", host_stream),
    ] {
        let mut whole = vec![0u8];
        whole.extend(&stream);
        streams.push((name, whole));
        let mut split = vec![15u8];
        split.extend(std::iter::repeat_n(3u16.to_le_bytes(), 15).flatten());
        split.extend(&stream);
        streams.push((
            if name == "host-stream" {
                "host-split"
            } else {
                "client-split"
            },
            split,
        ));
    }

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    write(&root.join("wire_decode"), &messages)?;
    write(&root.join("frame_decoder"), &streams)?;
    Ok(())
}

fn write(dir: &Path, seeds: &Seeds) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("{} seeds in {}", seeds.len(), dir.display());
    Ok(())
}
