//! Tokens per second of the embedded engine: greedy generation on stories260K.bin.
//!
//! Run with `cargo bench -p fabstir-inference`; the model is found like the tests find it
//! (`<workspace>/models/tinyllamas`).
#![allow(missing_docs)] // criterion's macros generate undocumented public functions.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fabstir_inference::{EmbeddedEngine, EngineConfig, GenerateRequest, InferenceBackend};

/// Tokens generated per iteration; greedy decoding of this model never stops early.
const TOKENS: u32 = 256;

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tinyllamas/stories260K.bin")
}

fn generation(c: &mut Criterion) {
    let path = model_path();
    let engine = EmbeddedEngine::load(&EngineConfig {
        checkpoint: path.clone(),
        ..EngineConfig::default()
    })
    .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    let request = GenerateRequest {
        max_tokens: TOKENS,
        temperature: 0.0,
        ..GenerateRequest::default()
    };

    let mut group = c.benchmark_group("stories260K");
    group.throughput(Throughput::Elements(u64::from(TOKENS)));
    group.bench_function("greedy_blocking", |b| {
        b.iter(|| {
            let done = engine
                .generate_blocking(&request, |_| ControlFlow::Continue(()))
                .unwrap_or_else(|e| panic!("generation failed: {e}"));
            assert_eq!(done.usage.completion_tokens, TOKENS);
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("cannot start tokio: {e}"));
    group.bench_function("greedy_stream", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let stream = engine
                    .generate(request.clone())
                    .await
                    .unwrap_or_else(|e| panic!("generation failed: {e}"));
                stream
                    .collect_text()
                    .await
                    .unwrap_or_else(|e| panic!("generation failed: {e}"))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, generation);
criterion_main!(benches);
