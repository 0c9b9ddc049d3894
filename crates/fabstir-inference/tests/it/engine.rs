//! The embedded engine on stories260K: reference ids, sampling, streaming, cancellation.

use std::ops::ControlFlow;
use std::time::Duration;

use fabstir_inference::llama2c::{Checkpoint, Tokenizer};
use fabstir_inference::{
    EmbeddedEngine, EngineConfig, Error, FinishReason, GenerateRequest, InferenceBackend,
    TokenStream, Usage,
};

use crate::model_file;

/// run.c's first 32 greedy tokens from BOS on stories260K.bin (models README).
const REFERENCE: [u32; 32] = [
    461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288,
    13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431,
];

fn engine(channel_capacity: usize) -> EmbeddedEngine {
    EmbeddedEngine::load(&EngineConfig {
        checkpoint: model_file("stories260K.bin"),
        channel_capacity,
        ..EngineConfig::default()
    })
    .expect("stories260K.bin loads")
}

fn greedy(max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        max_tokens,
        temperature: 0.0,
        ..GenerateRequest::default()
    }
}

async fn ids(stream: &mut TokenStream) -> Vec<u32> {
    let mut ids = Vec::new();
    while let Some(token) = stream.next_token().await {
        ids.push(token.expect("generation succeeds").id);
    }
    ids
}

#[test]
fn greedy_reproduces_run_c() {
    let engine = engine(8);
    let info = engine.model();
    assert_eq!(
        (info.name.as_str(), info.vocab_size, info.context_length),
        ("stories260K", 512, 512)
    );
    let mut got = Vec::new();
    let done = engine
        .generate_blocking(&greedy(32), |t| {
            assert_eq!(t.text, format!("<{}>", t.id));
            got.push(t.id);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(got, REFERENCE);
    assert_eq!(done.finish_reason, FinishReason::MaxTokens);
    assert_eq!(
        done.usage,
        Usage {
            prompt_tokens: 1,
            completion_tokens: 32
        }
    );
}

#[tokio::test]
async fn stream_matches_reference_and_counts_usage() {
    let engine = engine(4);
    let mut stream = engine.generate(greedy(32)).await.unwrap();
    assert_eq!(ids(&mut stream).await, REFERENCE);
    assert_eq!(stream.finish_reason(), Some(FinishReason::MaxTokens));
    assert_eq!(
        stream.usage(),
        Usage {
            prompt_tokens: 1,
            completion_tokens: 32
        }
    );
    assert_eq!(stream.usage().total_tokens(), 33);

    // A prompt of token ids is forced, then generation continues from it.
    let prompt: Vec<String> = REFERENCE[..5].iter().map(u32::to_string).collect();
    let request = GenerateRequest {
        prompt: prompt.join(" "),
        ..greedy(7)
    };
    let mut stream = engine.generate(request).await.unwrap();
    assert_eq!(ids(&mut stream).await, REFERENCE[5..12]);
    assert_eq!(
        stream.usage(),
        Usage {
            prompt_tokens: 6,
            completion_tokens: 7
        }
    );
}

#[tokio::test]
async fn max_tokens_and_context_end_generation() {
    let engine = engine(64);
    for max_tokens in [0, 1, 5] {
        let mut stream = engine.generate(greedy(max_tokens)).await.unwrap();
        assert_eq!(ids(&mut stream).await.len(), max_tokens as usize);
        assert_eq!(stream.finish_reason(), Some(FinishReason::MaxTokens));
        assert_eq!(stream.usage().completion_tokens, max_tokens);
    }
    // Greedy decoding of this model ends in a loop, so it runs until the context is full:
    // one token per position of the 512-token context.
    let mut stream = engine.generate(greedy(100_000)).await.unwrap();
    let got = ids(&mut stream).await;
    assert_eq!(stream.finish_reason(), Some(FinishReason::ContextFull));
    assert_eq!(got.len(), 512);
    assert_eq!(
        stream.usage(),
        Usage {
            prompt_tokens: 1,
            completion_tokens: 512
        }
    );
}

#[tokio::test]
async fn sampling_is_reproducible_per_seed() {
    let engine = engine(16);
    let sample = |seed: u64, top_p: f32| {
        let engine = engine.clone();
        async move {
            let request = GenerateRequest {
                max_tokens: 40,
                temperature: 1.0,
                top_p,
                seed,
                ..GenerateRequest::default()
            };
            let mut stream = engine.generate(request).await.unwrap();
            ids(&mut stream).await
        }
    };
    for top_p in [0.9, 1.0] {
        let a = sample(42, top_p).await;
        assert!(!a.is_empty());
        assert_eq!(a, sample(42, top_p).await);
        assert_ne!(a, sample(43, top_p).await);
        assert_ne!(a, REFERENCE[..a.len().min(32)]);
    }
}

/// Waits until the engine has no generation running; the producer must stop by itself.
async fn wait_idle(engine: &EmbeddedEngine) {
    for _ in 0..500 {
        if engine.active_generations() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("generation still running 5 s after cancellation");
}

#[tokio::test]
async fn dropping_the_stream_stops_the_producer() {
    let engine = engine(2);
    let mut stream = engine.generate(greedy(500)).await.unwrap();
    for _ in 0..3 {
        stream.next_token().await.unwrap().unwrap();
    }
    drop(stream);
    wait_idle(&engine).await;
    // Read 3, at most 2 buffered and one in hand when the channel closed.
    let generated = engine.tokens_generated();
    assert!(generated <= 6, "producer ran on: {generated} tokens");
}

#[tokio::test]
async fn cancellation_token_stops_generation() {
    let engine = engine(2);
    let request = greedy(500);
    let cancel = request.cancel.clone();
    let mut stream = engine.generate(request).await.unwrap();
    stream.next_token().await.unwrap().unwrap();
    cancel.cancel();
    assert!(stream.next_token().await.is_none());
    assert_eq!(stream.finish_reason(), Some(FinishReason::Cancelled));
    assert_eq!(stream.usage().completion_tokens, 1);
    wait_idle(&engine).await;
    assert!(
        engine.tokens_generated() <= 4,
        "{}",
        engine.tokens_generated()
    );

    // The stream's own cancel works too, and leaves the request's token alone.
    let request = greedy(500);
    let parent = request.cancel.clone();
    let mut stream = engine.generate(request).await.unwrap();
    stream.cancel();
    assert!(stream.next_token().await.is_none());
    assert_eq!(stream.finish_reason(), Some(FinishReason::Cancelled));
    assert!(!parent.is_cancelled());
    wait_idle(&engine).await;
}

#[tokio::test]
async fn bad_prompts_and_parameters_are_errors() {
    let engine = engine(4);
    for (prompt, check) in [
        (
            "Once upon a time",
            (|e| matches!(e, Error::PromptNotTokenIds { .. })) as fn(&Error) -> bool,
        ),
        ("1 512", |e| {
            matches!(e, Error::TokenOutOfRange { id: 512, .. })
        }),
    ] {
        let request = GenerateRequest {
            prompt: prompt.into(),
            ..greedy(4)
        };
        let err = engine.generate(request).await.unwrap_err();
        assert!(check(&err), "{prompt}: {err}");
    }
    let long = vec!["5"; 600].join(" ");
    let err = engine
        .generate(GenerateRequest {
            prompt: long,
            ..greedy(4)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PromptTooLong {
                tokens: 601,
                context_length: 512
            }
        ),
        "{err}"
    );
    for (temperature, top_p) in [(-1.0, 0.9), (f32::NAN, 0.9), (1.0, f32::INFINITY)] {
        let request = GenerateRequest {
            temperature,
            top_p,
            ..greedy(4)
        };
        assert!(matches!(
            engine.generate(request).await,
            Err(Error::InvalidRequest(_))
        ));
    }
}

/// A 512-piece vocabulary with byte tokens, to run the engine's text path on stories260K.
fn byte_tokenizer() -> Tokenizer {
    let mut pieces: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    pieces.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    while pieces.len() < 512 {
        pieces.push(format!(" w{}", pieces.len()));
    }
    let mut bytes = 8i32.to_le_bytes().to_vec();
    for piece in &pieces {
        bytes.extend_from_slice(&0f32.to_le_bytes());
        bytes.extend_from_slice(&(piece.len() as i32).to_le_bytes());
        bytes.extend_from_slice(piece.as_bytes());
    }
    Tokenizer::from_bytes(&bytes).expect("synthetic tokenizer parses")
}

#[tokio::test]
async fn tokens_carry_decoded_text() {
    let checkpoint = Checkpoint::load(model_file("stories260K.bin")).unwrap();
    let engine = EmbeddedEngine::new("bytes", checkpoint, Some(byte_tokenizer())).unwrap();
    let mut stream = engine.generate(greedy(32)).await.unwrap();
    let mut ids = Vec::new();
    let mut text = String::new();
    while let Some(token) = stream.next_token().await {
        let token = token.unwrap();
        ids.push(token.id);
        text.push_str(&token.text);
    }
    // Prompt "" encodes to BOS alone, so the ids are the reference's.
    assert_eq!(ids, REFERENCE);
    let tokenizer = engine.tokenizer().unwrap();
    assert_eq!(text, tokenizer.decode_all(&ids).unwrap());
    // The space of the first piece after BOS is dropped, as run.c does.
    assert!(text.starts_with("w461 w461 w401"), "{text:?}");
    assert!(text.contains('\n'), "{text:?}");
}
