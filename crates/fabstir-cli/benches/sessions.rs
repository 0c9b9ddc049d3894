//! Sessions against one-shot jobs, side by side (`cargo xtask bench`): the time to first token
//! of a prompt inside an open session against the embedded engine called directly, 1,000
//! prompts through one session (throughput and the client's peak memory) against one-shot jobs
//! through one SDK, and on a chain that mines a block every 2 seconds the first prompt (which
//! waits for the session's opening) against the later ones and against one-shot jobs. Each
//! client flow runs in a process of its own (this binary again, with `FABSTIR_BENCH_FLOW`), so
//! that each memory figure is that flow's alone; the hosts run in `fabstir devnet` processes.
//! Results go to the `sessions` section of `bench/results.json` and a table on stdout.

#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: set-up failures abort it.

mod common;
#[path = "../../../bench/results.rs"]
mod results;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{DevnetProcess, connect, direct_run, engine, millis, peak_rss_kib, root};
use fabstir_cli::devnet::ModelFiles;
use fabstir_core::TokenAmount;
use fabstir_sdk::{FabstirSdk, JobRequest, Session, SessionRequest};
use serde_json::{Value, json};

/// Prompts (and jobs) whose first token is timed.
const TTFT_RUNS: usize = 30;
/// Prompts through one session for the throughput and memory figures.
const PROMPTS: u64 = 1_000;
/// One-shot jobs for the same figures (each costs three transactions).
const JOBS: u64 = 100;
/// Tokens per prompt and per job.
const TOKENS: u32 = 8;
/// Prompts timed on the 2-second chain after the first.
const SLOW_PROMPTS: usize = 5;
/// The prompt everything continues.
const PROMPT: &str = "ROMEO:";

fn p50_p95(samples: &mut [f64]) -> Value {
    json!({
        "p50": results::percentile(samples, 0.5),
        "p95": results::percentile(samples, 0.95),
    })
}

fn model() -> String {
    ModelFiles::default_for(&root()).name
}

/// A session of [`TOKENS`] tokens per prompt, sampled, with a deposit that covers the run.
async fn open(sdk: &FabstirSdk) -> Session {
    let mut request =
        SessionRequest::new(model(), TokenAmount::from_base_units(500_000u64)).max_tokens(TOKENS);
    request.temperature_milli = 800;
    sdk.open_session(request).await.unwrap()
}

/// The time to the first text of one prompt, and its counted tokens.
async fn timed_prompt(session: &mut Session) -> (Duration, u64) {
    let start = Instant::now();
    let mut first = None;
    let reply = session
        .prompt_with(PROMPT, |_| {
            first.get_or_insert_with(|| start.elapsed());
        })
        .await
        .unwrap();
    (first.expect("a token arrived"), reply.counted)
}

fn job(seed: u64) -> JobRequest {
    let mut request = JobRequest::new(model(), PROMPT).max_tokens(TOKENS);
    request.temperature_milli = 800;
    request.seed = seed;
    request
}

/// The time to the first token of one one-shot job, run to its settlement.
async fn timed_job(sdk: &FabstirSdk, seed: u64) -> Duration {
    let start = Instant::now();
    let mut handle = sdk.submit_job(job(seed)).await.unwrap();
    let mut first = None;
    while handle.next_tokens().await.is_some() {
        first.get_or_insert_with(|| start.elapsed());
    }
    handle.result().await.unwrap();
    first.expect("a token arrived")
}

/// One session: warm time to first token, then [`PROMPTS`] prompts.
async fn session_flow(sdk: &FabstirSdk) -> Value {
    let mut session = open(sdk).await;
    timed_prompt(&mut session).await;
    let mut ttft = Vec::new();
    for _ in 0..TTFT_RUNS {
        ttft.push(millis(timed_prompt(&mut session).await.0));
    }
    let start = Instant::now();
    let mut tokens = 0;
    for _ in 0..PROMPTS {
        tokens += timed_prompt(&mut session).await.1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_kib();
    let closed = session.close().await.unwrap();
    assert!(closed.cooperative);
    json!({
        "ttft_ms": p50_p95(&mut ttft),
        "prompts": PROMPTS,
        "seconds": seconds,
        "prompts_per_s": PROMPTS as f64 / seconds,
        "tokens_per_s": tokens as f64 / seconds,
        "client_peak_rss_mib": peak as f64 / 1024.0,
        "transactions": 2,
    })
}

/// One-shot jobs: warm time to first token, then [`JOBS`] jobs one after the other.
async fn one_shot_flow(sdk: &FabstirSdk) -> Value {
    timed_job(sdk, 999).await;
    let mut ttft = Vec::new();
    for i in 0..TTFT_RUNS as u64 {
        ttft.push(millis(timed_job(sdk, i + 1).await));
    }
    let start = Instant::now();
    for i in 0..JOBS {
        timed_job(sdk, 1_000 + i).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    json!({
        "ttft_ms": p50_p95(&mut ttft),
        "jobs": JOBS,
        "seconds": seconds,
        "prompts_per_s": JOBS as f64 / seconds,
        "client_peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
        "transactions_per_prompt": 3,
    })
}

/// On a 2-second chain: the first prompt timed from the session's opening, later prompts, and
/// one-shot jobs.
async fn slow_chain_flow(sdk: &FabstirSdk) -> Value {
    let start = Instant::now();
    let mut session = open(sdk).await;
    let opened = start.elapsed();
    let (ttft, _) = timed_prompt(&mut session).await;
    let first_prompt = millis(opened + ttft);
    let mut later = Vec::new();
    for _ in 0..SLOW_PROMPTS {
        later.push(millis(timed_prompt(&mut session).await.0));
    }
    session.close().await.unwrap();
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(millis(timed_job(sdk, i + 1).await));
    }
    json!({
        "block_time_s": 2,
        "first_prompt_ttft_with_open_ms": first_prompt,
        "later_prompts_ttft_ms": p50_p95(&mut later),
        "one_shot_ttft_ms": p50_p95(&mut jobs),
    })
}

/// Runs `flow` in a process of its own against the devnet in `dir`; its figures.
fn in_child(flow: &str, dir: &std::path::Path) -> Value {
    let output = Command::new(std::env::current_exe().unwrap())
        .env("FABSTIR_BENCH_FLOW", flow)
        .env("FABSTIR_BENCH_DEVNET", dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "flow {flow} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// The engine alone: time to first token of the same prompt (after a warm-up run).
fn direct_ttft(runtime: &tokio::runtime::Runtime) -> Value {
    let engine = engine();
    let mut samples = Vec::new();
    runtime.block_on(async {
        direct_run(&engine, PROMPT, TOKENS, 0).await;
        for seed in 1..=TTFT_RUNS as u64 {
            samples.push(millis(direct_run(&engine, PROMPT, TOKENS, seed).await.0));
        }
    });
    p50_p95(&mut samples)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if let Ok(flow) = std::env::var("FABSTIR_BENCH_FLOW") {
        let dir = std::path::PathBuf::from(std::env::var("FABSTIR_BENCH_DEVNET").unwrap());
        let figures = runtime.block_on(async {
            let sdk = connect(&dir).await;
            match flow.as_str() {
                "session" => session_flow(&sdk).await,
                "one_shot" => one_shot_flow(&sdk).await,
                "slow_chain" => slow_chain_flow(&sdk).await,
                other => panic!("no flow {other}"),
            }
        });
        println!("{figures}");
        return;
    }
    let direct = direct_ttft(&runtime);
    let (session, one_shot) = {
        let devnet = DevnetProcess::start(3, &[]);
        (
            in_child("session", devnet.dir()),
            in_child("one_shot", devnet.dir()),
        )
    };
    let slow = {
        let devnet = DevnetProcess::start(1, &["--block-time", "2"]);
        in_child("slow_chain", devnet.dir())
    };
    let overhead = |flow: &Value, key: &str| {
        flow["ttft_ms"][key].as_f64().unwrap() - direct[key].as_f64().unwrap()
    };
    let figures = json!({
        "setup": "hosts in separate `fabstir devnet` processes (3 hosts, loopback, anvil mining \
                  at once; then 1 host with a block every 2 s), each client flow in its own \
                  process; release build",
        "model": model(),
        "tokens_per_prompt": TOKENS,
        "direct_ttft_ms": direct,
        "session": session,
        "one_shot": one_shot,
        "ttft_overhead_ms": {
            "session": {"p50": overhead(&session, "p50"), "p95": overhead(&session, "p95")},
            "one_shot": {"p50": overhead(&one_shot, "p50"), "p95": overhead(&one_shot, "p95")},
        },
        "two_second_blocks": slow,
    });
    let f = |v: &Value| v.as_f64().unwrap();
    let o = &figures["ttft_overhead_ms"];
    println!("| measure | session | one-shot |");
    println!("|---|---:|---:|");
    println!(
        "| TTFT overhead over the engine, p50 (ms) | {:.2} | {:.1} |",
        f(&o["session"]["p50"]),
        f(&o["one_shot"]["p50"])
    );
    println!(
        "| prompts/s through one client | {:.0} | {:.1} |",
        f(&session["prompts_per_s"]),
        f(&one_shot["prompts_per_s"])
    );
    println!(
        "| client peak RSS (MiB) | {:.1} | {:.1} |",
        f(&session["client_peak_rss_mib"]),
        f(&one_shot["client_peak_rss_mib"])
    );
    println!(
        "2-second blocks: first prompt with the open {:.0} ms, later prompts p50 {:.1} ms, \
         one-shot p50 {:.0} ms",
        f(&slow["first_prompt_ttft_with_open_ms"]),
        f(&slow["later_prompts_ttft_ms"]["p50"]),
        f(&slow["one_shot_ttft_ms"]["p50"])
    );
    let file = root().join("bench/results.json");
    results::write_section(&file, "sessions", figures).unwrap();
    println!("sessions written to bench/results.json");
}
