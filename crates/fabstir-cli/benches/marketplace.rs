//! The marketplace's own cost, measured side by side with the backend alone (`cargo xtask
//! bench`): time to first token through the SDK (warm and cold) against the embedded engine
//! called directly, streaming throughput through the SDK against the engine, 100 concurrent
//! jobs through one SDK with the client process's peak memory, and the connection pool's
//! reuse rate over 1,000 jobs through one SDK, and the OpenAI gateway's time to first token
//! against the SDK's, job by job in pairs on the same SDK. The hosts run in a separate `fabstir devnet`
//! process so that the memory figure is the client's alone. Results go to the `marketplace`
//! section of `bench/results.json` and a table on stdout.

#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: set-up failures abort it.

mod common;
#[path = "../../../bench/results.rs"]
mod results;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DevnetProcess, connect, direct_run, engine, millis, peak_rss_kib, root};
use fabstir_cli::devnet::ModelFiles;
use fabstir_sdk::{FabstirSdk, JobRequest};
use futures::StreamExt as _;

const RUNS: usize = 30;
const TOKENS: u32 = 200;
/// Jobs run through one SDK to measure how often the connection pool is reused.
const POOL_JOBS: u64 = 1_000;
/// Tokens of each of those jobs: short, since the connections are what is measured.
const POOL_TOKENS: u32 = 4;
/// Of those, how many run at once: the devnet's three hosts take four jobs each.
const POOL_CONCURRENCY: usize = 10;
/// Pairs of jobs (one through the SDK, one through the gateway) for the gateway's overhead.
const GATEWAY_PAIRS: u64 = 60;
/// Tokens of each: the first token is what is measured.
const GATEWAY_TOKENS: u32 = 8;

/// A job of `tokens` tokens, sampled with `seed`.
fn request(model: &str, tokens: u32, seed: u64) -> JobRequest {
    let mut request = JobRequest::new(model, "ROMEO:").max_tokens(tokens);
    request.temperature_milli = 800;
    request.seed = seed;
    request
}

/// Runs a job through the SDK to its settled result.
async fn settled_job(sdk: &FabstirSdk, request: JobRequest) {
    sdk.submit_job(request)
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
}

/// Time to first token and tokens/s of one job through the SDK.
async fn sdk_job(sdk: &FabstirSdk, model: &str, seed: u64) -> (Duration, f64) {
    let start = Instant::now();
    let mut handle = sdk.submit_job(request(model, TOKENS, seed)).await.unwrap();
    let mut first = None;
    let mut last = Duration::ZERO;
    while handle.next_tokens().await.is_some() {
        first.get_or_insert_with(|| start.elapsed());
        last = start.elapsed();
    }
    let result = handle.result().await.unwrap();
    let ttft = first.unwrap_or(last);
    // Tokens after the first, over the time from the first to the last (settlement excluded).
    let streaming = (last - ttft).as_secs_f64().max(1e-9);
    (
        ttft,
        result.tokens_used.saturating_sub(1) as f64 / streaming,
    )
}

/// Time to first token of a streamed completion through the gateway at `url` (the SDK job's
/// prompt, unchanged): from sending the request to the second event, the first that carries
/// text (the gateway sends its opening chunk and the first text together, once the first
/// token arrived). Reads the stream to its end.
async fn gateway_job(http: &reqwest::Client, url: &str, model: &str, seed: u64) -> Duration {
    let body = serde_json::json!({
        "model": model,
        "prompt": "ROMEO:",
        "max_tokens": GATEWAY_TOKENS,
        "temperature": 0.8,
        "seed": seed,
        "stream": true,
    });
    let start = Instant::now();
    let response = http.post(url).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mut events = response.bytes_stream();
    let mut seen = String::new();
    let mut first = None;
    while let Some(bytes) = events.next().await {
        seen.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
        if first.is_none() && seen.matches("\n\n").count() >= 2 {
            first = Some(start.elapsed());
        }
    }
    assert!(seen.trim_end().ends_with("data: [DONE]"), "{seen}");
    first.expect("a token arrived")
}

/// The SDK's time to first token for the same job as [`gateway_job`].
async fn sdk_first_token(sdk: &FabstirSdk, model: &str, seed: u64) -> Duration {
    let start = Instant::now();
    let request = request(model, GATEWAY_TOKENS, seed);
    let mut handle = sdk.submit_job(request).await.unwrap();
    let mut first = None;
    while handle.next_tokens().await.is_some() {
        first.get_or_insert_with(|| start.elapsed());
    }
    handle.result().await.unwrap();
    first.expect("a token arrived")
}

/// The gateway over a clone of `sdk` on 127.0.0.1, against the SDK alone: p50 and p95 of
/// each, and of the paired differences.
async fn gateway_overhead(sdk: &FabstirSdk, model: &str) -> serde_json::Value {
    let gateway =
        fabstir_gateway::Gateway::new(sdk.clone(), fabstir_gateway::GatewayConfig::default())
            .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let addr = gateway
        .spawn(([127, 0, 0, 1], 0).into(), shutdown.clone())
        .await
        .unwrap();
    let url = format!("http://{addr}/v1/completions");
    let http = reqwest::Client::new();
    gateway_job(&http, &url, model, 999).await;
    let (mut direct, mut through, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..GATEWAY_PAIRS {
        let d = millis(sdk_first_token(sdk, model, i + 1).await);
        let g = millis(gateway_job(&http, &url, model, i + 1).await);
        direct.push(d);
        through.push(g);
        overhead.push(g - d);
    }
    shutdown.cancel();
    let p = |v: &mut Vec<f64>| {
        serde_json::json!({
            "p50": results::percentile(v, 0.5),
            "p95": results::percentile(v, 0.95),
        })
    };
    serde_json::json!({
        "pairs": GATEWAY_PAIRS,
        "tokens_per_job": GATEWAY_TOKENS,
        "sdk": p(&mut direct),
        "gateway": p(&mut through),
        "overhead_paired": p(&mut overhead),
    })
}

fn main() {
    // `cargo bench` passes flags such as `--bench`; this harness takes none.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let devnet = DevnetProcess::start(3, &[]);
    let dir = devnet.dir();
    let files = ModelFiles::default_for(&root());
    let engine = engine();

    let figures = runtime.block_on(async {
        let mut direct_ttft = Vec::new();
        let mut direct_tps = Vec::new();
        for i in 0..RUNS {
            let (ttft, tps) = direct_run(&engine, "ROMEO:", TOKENS, i as u64 + 1).await;
            direct_ttft.push(millis(ttft));
            direct_tps.push(tps);
        }
        // Warm: one SDK, caches filled and connections open by a first job.
        let sdk = connect(dir).await;
        sdk_job(&sdk, &files.name, 999).await;
        let mut warm_ttft = Vec::new();
        let mut sdk_tps = Vec::new();
        for i in 0..RUNS {
            let (ttft, tps) = sdk_job(&sdk, &files.name, i as u64 + 1).await;
            warm_ttft.push(millis(ttft));
            sdk_tps.push(tps);
        }
        let gateway = gateway_overhead(&sdk, &files.name).await;
        // Cold: a new SDK (new connections, empty caches) per job.
        let mut cold_ttft = Vec::new();
        for i in 0..10 {
            let cold = connect(dir).await;
            let (ttft, _) = sdk_job(&cold, &files.name, i + 1).await;
            cold_ttft.push(millis(ttft));
        }
        // 100 concurrent jobs through one SDK.
        let sdk = Arc::new(sdk);
        let start = Instant::now();
        let jobs: Vec<_> = (0..100u64)
            .map(|i| {
                let sdk = sdk.clone();
                let request = request(&files.name, 50, i + 1);
                tokio::spawn(async move { settled_job(&sdk, request).await })
            })
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
        let concurrent = start.elapsed();
        // Read now: the 1,000 jobs below must not count towards this peak.
        let concurrent_peak_kib = peak_rss_kib();

        // 1,000 short jobs through one new SDK: every use of a connection (quote, stream,
        // capabilities) either finds one open in the pool or dials.
        let pooled = connect(dir).await;
        let start = Instant::now();
        futures::stream::iter(0..POOL_JOBS)
            .map(|i| settled_job(&pooled, request(&files.name, POOL_TOKENS, i + 1)))
            .buffer_unordered(POOL_CONCURRENCY)
            .for_each(|_| async {})
            .await;
        let pool_seconds = start.elapsed().as_secs_f64();
        let pool = pooled.pool_stats().expect("the real network keeps a pool");
        assert!(pool.hits + pool.misses > 0, "no connection use was counted");

        let direct_p50 = results::percentile(&mut direct_ttft, 0.5);
        let direct_p95 = results::percentile(&mut direct_ttft, 0.95);
        let warm_p50 = results::percentile(&mut warm_ttft, 0.5);
        let warm_p95 = results::percentile(&mut warm_ttft, 0.95);
        let cold_p50 = results::percentile(&mut cold_ttft, 0.5);
        let cold_p95 = results::percentile(&mut cold_ttft, 0.95);
        let direct_rate = results::percentile(&mut direct_tps, 0.5);
        let sdk_rate = results::percentile(&mut sdk_tps, 0.5);
        serde_json::json!({
            "setup": "3 hosts in a separate `fabstir devnet` process, loopback, anvil mining \
                      at once, 10 ms chain polling; release build",
            "model": files.name,
            "tokens_per_job": TOKENS,
            "time_to_first_token_ms": {
                "direct": {"p50": direct_p50, "p95": direct_p95},
                "sdk_warm": {"p50": warm_p50, "p95": warm_p95},
                "sdk_cold": {"p50": cold_p50, "p95": cold_p95},
                "overhead_warm": {"p50": warm_p50 - direct_p50, "p95": warm_p95 - direct_p95},
                "overhead_cold": {"p50": cold_p50 - direct_p50, "p95": cold_p95 - direct_p95},
            },
            "gateway_time_to_first_token_ms": gateway,
            "streaming_tokens_per_s": {
                "direct_p50": direct_rate,
                "sdk_p50": sdk_rate,
                "sdk_share_of_direct": sdk_rate / direct_rate,
            },
            "concurrent_100_jobs": {
                "tokens_per_job": 50,
                "seconds": concurrent.as_secs_f64(),
                "client_peak_rss_mib": concurrent_peak_kib as f64 / 1024.0,
            },
            "pool_reuse_1000_jobs": {
                "jobs": POOL_JOBS,
                "tokens_per_job": POOL_TOKENS,
                "concurrency": POOL_CONCURRENCY,
                "seconds": pool_seconds,
                "hits": pool.hits,
                "misses": pool.misses,
                "reuse_rate": pool.hits as f64 / (pool.hits + pool.misses) as f64,
                "connected_at_end": pool.connected,
                "evicted_idle": pool.evicted_idle,
                "evicted_full": pool.evicted_full,
            },
        })
    });
    drop(devnet);
    let t = &figures["time_to_first_token_ms"];
    let s = &figures["streaming_tokens_per_s"];
    let c = &figures["concurrent_100_jobs"];
    let p = &figures["pool_reuse_1000_jobs"];
    println!("| measure | p50 | p95 |");
    println!("|---|---:|---:|");
    for (name, key) in [
        ("TTFT, engine direct (ms)", "direct"),
        ("TTFT, SDK warm (ms)", "sdk_warm"),
        ("TTFT, SDK cold (ms)", "sdk_cold"),
        ("marketplace overhead, warm (ms)", "overhead_warm"),
        ("marketplace overhead, cold (ms)", "overhead_cold"),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} |",
            t[key]["p50"].as_f64().unwrap(),
            t[key]["p95"].as_f64().unwrap()
        );
    }
    let g = &figures["gateway_time_to_first_token_ms"];
    println!(
        "| gateway overhead over the SDK, paired (ms) | {:.2} | {:.2} |",
        g["overhead_paired"]["p50"].as_f64().unwrap(),
        g["overhead_paired"]["p95"].as_f64().unwrap()
    );
    println!(
        "streaming: engine {:.0} tokens/s, through the SDK {:.0} tokens/s ({:.1}% of direct)",
        s["direct_p50"].as_f64().unwrap(),
        s["sdk_p50"].as_f64().unwrap(),
        100.0 * s["sdk_share_of_direct"].as_f64().unwrap()
    );
    println!(
        "100 concurrent jobs of 50 tokens through one SDK: {:.2} s, client peak RSS {:.1} MiB",
        c["seconds"].as_f64().unwrap(),
        c["client_peak_rss_mib"].as_f64().unwrap()
    );
    println!(
        "{POOL_JOBS} jobs of {POOL_TOKENS} tokens through one SDK: pool reuse {:.1}% \
         ({} hits, {} misses), {:.1} s",
        100.0 * p["reuse_rate"].as_f64().unwrap(),
        p["hits"],
        p["misses"],
        p["seconds"].as_f64().unwrap()
    );
    let file = root().join("bench/results.json");
    results::write_section(&file, "marketplace", figures).unwrap();
    println!("marketplace written to bench/results.json");
}
