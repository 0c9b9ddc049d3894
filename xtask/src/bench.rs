//! `cargo xtask bench`: every benchmark in one run, one `bench/results.json` holding all
//! their figures, and a summary table on stdout.
//!
//! The file starts empty each run. xtask writes the `machine` section, then `cargo bench`
//! runs the benchmarks: those that measure what criterion cannot (the marketplace end to
//! end, gas, discovery percentiles) write their own sections through `bench/results.rs`;
//! criterion's estimates of this run are then collected from `target/criterion` into the
//! `criterion` section, and xtask adds the `run` section last.

#[path = "../../bench/results.rs"]
mod results;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

/// Where the results go, relative to the workspace root.
const RESULTS: &str = "bench/results.json";

/// The benchmark targets run, with their packages.
const BENCHES: [(&str, &str); 6] = [
    ("fabstir-inference", "engine"),
    ("fabstir-p2p", "stream"),
    ("fabstir-payments", "submit"),
    ("fabstir-contracts", "gas"),
    ("fabstir-cli", "marketplace"),
    ("fabstir-cli", "sessions"),
];

/// Runs every benchmark and writes and prints their figures.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let tools = crate::tools::install(root)?;
    let file = root.join(RESULTS);
    // One run, one file: no figure of an earlier run survives.
    match fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", file.display()));
        }
        _ => {}
    }
    write(&file, "machine", machine(&tools.anvil))?;

    // Absolute: the benchmarks run in their packages' folders.
    let criterion = std::path::absolute(crate::target_dir(root))
        .context("the target directory")?
        .join("criterion");
    let mut args = vec!["bench", "--locked"];
    let mut packages: Vec<&str> = BENCHES.iter().map(|(package, _)| *package).collect();
    packages.dedup();
    for package in packages {
        args.extend(["--package", package]);
    }
    for (_, bench) in BENCHES {
        args.extend(["--bench", bench]);
    }
    args.extend(["--", "--quick"]);
    crate::run(
        Command::new(crate::env_or("CARGO", "cargo"))
            .args(&args)
            .env("CRITERION_HOME", &criterion)
            .current_dir(root),
    )?;

    write(
        &file,
        "criterion",
        collect_criterion(&criterion, started_at)?,
    )?;
    write(
        &file,
        "run",
        json!({
            "command": "cargo xtask bench",
            "commit": commit(root),
            "started_unix_s": started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            "seconds": started.elapsed().as_secs_f64(),
            "load_average_at_end": load_average(),
        }),
    )?;
    let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let all: Value = serde_json::from_str(&text).context("parsing bench/results.json")?;
    print!("{}", summary(&all)?);
    println!("all figures in {RESULTS}");
    Ok(())
}

fn write(file: &Path, key: &str, value: Value) -> Result<()> {
    results::write_section(file, key, value)
        .with_context(|| format!("writing the `{key}` section of {}", file.display()))
}

/// What the figures were measured on (best effort: what cannot be read is `null`).
fn machine(anvil: &Path) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "cpu": cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':'])),
        "cores": std::thread::available_parallelism().ok().map(|n| n.get()),
        "memory_gib": memory_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        "os": format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned()),
        "load_average_at_start": load_average(),
        "rustc": first_line(Command::new(crate::env_or("RUSTC", "rustc")).arg("-V")),
        "anvil": first_line(Command::new(anvil).arg("--version")),
    })
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews the figures.
fn load_average() -> Option<Vec<f64>> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .take(3)
        .map(|v| v.parse().ok())
        .collect()
}

/// The commit measured, with `-dirty` when the work tree has changes.
fn commit(root: &Path) -> Option<String> {
    let head = first_line(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(root),
    )?;
    let status = Command::new("git")
        .args(["status", "--porcelain"])
        .current_dir(root)
        .output()
        .ok()?;
    let dirty = if status.stdout.is_empty() {
        ""
    } else {
        "-dirty"
    };
    Some(format!("{head}{dirty}"))
}

fn first_line(cmd: &mut Command) -> Option<String> {
    let output = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().next().map(|l| l.trim().to_owned())
}

/// Criterion's estimates written since `since` (this run's), by benchmark id: mean and
/// median in milliseconds, and elements per second for a benchmark with a throughput.
fn collect_criterion(dir: &Path, since: SystemTime) -> Result<Value> {
    let mut found = Map::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == "new") {
                if let Some((id, figures)) = read_estimate(&path, since)? {
                    found.insert(id, figures);
                }
            } else if path.is_dir() && !path.ends_with("report") {
                pending.push(path);
            }
        }
    }
    Ok(Value::Object(found))
}

/// One benchmark's `new/` folder, if criterion wrote it since `since`.
fn read_estimate(new: &Path, since: SystemTime) -> Result<Option<(String, Value)>> {
    let estimates_file = new.join("estimates.json");
    let fresh = fs::metadata(&estimates_file)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified >= since);
    if !fresh {
        return Ok(None);
    }
    let read = |file: PathBuf| -> Result<Value> {
        let text =
            fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))
    };
    let benchmark = read(new.join("benchmark.json"))?;
    let estimates = read(estimates_file)?;
    let id = benchmark["full_id"]
        .as_str()
        .with_context(|| format!("{} has no full_id", new.display()))?
        .to_owned();
    let ns = |which: &str| estimates[which]["point_estimate"].as_f64();
    let (Some(mean), Some(median)) = (ns("mean"), ns("median")) else {
        bail!("{} has no mean or median", new.display());
    };
    let mut figures = json!({"mean_ms": mean / 1e6, "median_ms": median / 1e6});
    if let Some(elements) = benchmark["throughput"]["Elements"].as_f64() {
        figures["elements"] = json!(elements);
        figures["elements_per_s"] = json!(elements / (mean / 1e9));
    }
    Ok(Some((id, figures)))
}

/// The figures of issue 8, one table row each; a missing figure is an error naming it.
fn summary(all: &Value) -> Result<String> {
    let get = |pointer: &str| -> Result<f64> {
        all.pointer(pointer)
            .and_then(Value::as_f64)
            .with_context(|| format!("{RESULTS} has no {pointer}"))
    };
    let ms = |pointer: &str| get(pointer).map(|v| format!("{v:.1} ms"));
    let p50_p95 = |pointer: &str| -> Result<String> {
        Ok(format!(
            "p50 {:.1} ms, p95 {:.1} ms",
            get(&format!("{pointer}/p50"))?,
            get(&format!("{pointer}/p95"))?
        ))
    };
    let per_s = |pointer: &str| get(pointer).map(|v| format!("{} tokens/s", thousands(v)));
    let gas = |pointer: &str| get(pointer).map(thousands);
    let criterion = |id: &str, field: &str| format!("/criterion/{}/{field}", id.replace('/', "~1"));
    let m = "/marketplace";
    let mut rows: Vec<[String; 3]> = Vec::new();
    let mut row = |area: &str, measure: &str, figure: String| {
        rows.push([area.to_owned(), measure.to_owned(), figure]);
    };

    let area = "1. time to first token";
    let ttft = format!("{m}/time_to_first_token_ms");
    for (key, label) in [
        ("direct", "engine called directly"),
        ("overhead_warm", "marketplace overhead, warm"),
        ("overhead_cold", "marketplace overhead, cold"),
    ] {
        row(area, label, p50_p95(&format!("{ttft}/{key}"))?);
    }
    row(
        area,
        "OpenAI gateway over the SDK, paired (target: at most 2 ms p50)",
        p50_p95(&format!(
            "{m}/gateway_time_to_first_token_ms/overhead_paired"
        ))?,
    );

    let area = "2. streaming throughput";
    let streaming = format!("{m}/streaming_tokens_per_s");
    row(
        area,
        "engine directly, p50",
        per_s(&format!("{streaming}/direct_p50"))?,
    );
    row(
        area,
        "through the SDK, p50",
        format!(
            "{} ({:.1}% of direct)",
            per_s(&format!("{streaming}/sdk_p50"))?,
            100.0 * get(&format!("{streaming}/sdk_share_of_direct"))?
        ),
    );

    let area = "3. gas";
    for (path, label) in [
        ("eth", "complete job, ETH"),
        ("usdc_approved", "complete job, USDC, approval given"),
        ("usdc_permit", "complete job, USDC by permit"),
    ] {
        row(
            area,
            label,
            gas(&format!("/gas/complete_job/{path}/total"))?,
        );
    }
    row(
        area,
        "complete job, USDC, first on a fresh deployment",
        gas("/gas/usdc_approved_first_job/total")?,
    );
    for (path, label) in [
        ("eth", "session open + close, ETH (0 per prompt)"),
        (
            "usdc_approved",
            "session open + close, USDC, approval given (0 per prompt)",
        ),
        (
            "usdc_permit",
            "session open + close, USDC by permit (0 per prompt)",
        ),
    ] {
        row(
            area,
            label,
            gas(&format!("/gas/session/{path}/open_close"))?,
        );
    }
    row(
        area,
        "session partial settlement, USDC",
        gas("/gas/session/usdc_approved/settle_partial")?,
    );
    let operations = all
        .pointer("/gas/operations")
        .and_then(Value::as_object)
        .with_context(|| format!("{RESULTS} has no /gas/operations"))?;
    for name in operations.keys() {
        row(area, name, gas(&format!("/gas/operations/{name}"))?);
    }

    let area = "4. discovery, 50 nodes";
    row(
        area,
        "cold (a new client joins)",
        format!(
            "{}; all 5 providers found in {} of {} runs",
            p50_p95("/discovery/cold_new_client_ms")?,
            get("/discovery/cold_runs_finding_all_5")?,
            get("/discovery/cold_runs")?
        ),
    );
    row(
        area,
        "cache cleared (connections open)",
        p50_p95("/discovery/cache_cleared_ms")?,
    );
    row(
        area,
        "from the cache",
        format!(
            "p50 {:.2} µs, p95 {:.2} µs",
            1000.0 * get("/discovery/cached_ms/p50")?,
            1000.0 * get("/discovery/cached_ms/p95")?
        ),
    );

    let area = "5. ranking and pool";
    row(
        area,
        "ranking 10,000 candidates (mean)",
        ms(&criterion("ranking/rank_10000", "mean_ms"))?,
    );
    let pool = format!("{m}/pool_reuse_1000_jobs");
    row(
        area,
        "pool reuse rate over 1,000 jobs",
        format!(
            "{:.1}% of {} uses found a connection open ({} open at the end)",
            100.0 * get(&format!("{pool}/reuse_rate"))?,
            thousands(get(&format!("{pool}/hits"))? + get(&format!("{pool}/misses"))?),
            get(&format!("{pool}/connected_at_end"))?
        ),
    );

    let area = "6. embedded inference";
    for (id, label) in [
        ("stories260K/greedy_blocking", "stories260K, blocking API"),
        ("stories260K/greedy_stream", "stories260K, async stream"),
    ] {
        row(area, label, per_s(&criterion(id, "elements_per_s"))?);
    }

    let area = "7. 100 concurrent jobs";
    row(
        area,
        "all completed in",
        format!("{:.2} s", get(&format!("{m}/concurrent_100_jobs/seconds"))?),
    );
    row(
        area,
        "client peak memory (VmHWM)",
        format!(
            "{:.1} MiB",
            get(&format!("{m}/concurrent_100_jobs/client_peak_rss_mib"))?
        ),
    );

    let area = "8. sessions against one-shot jobs";
    let sessions = "/sessions";
    row(
        area,
        "TTFT overhead of a prompt in an open session over the engine (target: at most 5 ms p50)",
        p50_p95(&format!("{sessions}/ttft_overhead_ms/session"))?,
    );
    row(
        area,
        "TTFT overhead of a one-shot job over the engine",
        p50_p95(&format!("{sessions}/ttft_overhead_ms/one_shot"))?,
    );
    row(
        area,
        "1,000 prompts through one session",
        format!(
            "{:.0} prompts/s, client peak {:.1} MiB, 2 transactions in all",
            get(&format!("{sessions}/session/prompts_per_s"))?,
            get(&format!("{sessions}/session/client_peak_rss_mib"))?
        ),
    );
    row(
        area,
        "one-shot jobs one after the other",
        format!(
            "{:.1} prompts/s, client peak {:.1} MiB, 3 transactions per prompt",
            get(&format!("{sessions}/one_shot/prompts_per_s"))?,
            get(&format!("{sessions}/one_shot/client_peak_rss_mib"))?
        ),
    );
    let slow = format!("{sessions}/two_second_blocks");
    row(
        area,
        "2-second blocks: first prompt (with the open), later prompts, one-shot",
        format!(
            "{:.0} ms; p50 {:.1} ms; p50 {:.0} ms",
            get(&format!("{slow}/first_prompt_ttft_with_open_ms"))?,
            get(&format!("{slow}/later_prompts_ttft_ms/p50"))?,
            get(&format!("{slow}/one_shot_ttft_ms/p50"))?
        ),
    );

    let area = "also measured";
    for (id, label) in [
        (
            "stream/one_token_per_frame",
            "token stream, one token per frame",
        ),
        ("stream/coalescing", "token stream, coalescing"),
    ] {
        row(area, label, per_s(&criterion(id, "elements_per_s"))?);
    }
    for (id, label) in [
        (
            "usdc_submission/warm_cache",
            "USDC submission, warm cache (mean)",
        ),
        (
            "usdc_submission/cold_cache",
            "USDC submission, cold cache (mean)",
        ),
    ] {
        row(area, label, ms(&criterion(id, "mean_ms"))?);
    }

    let machine = &all["machine"];
    let mut out = format!(
        "\nMeasured on {} ({} cores, {} GiB); load averages {} at the start, {} at the end\n\n",
        machine["cpu"].as_str().unwrap_or("an unknown CPU"),
        machine["cores"],
        machine["memory_gib"],
        machine["load_average_at_start"],
        all["run"]["load_average_at_end"]
    );
    out.push_str("| area | measure | figure |\n|---|---|---:|\n");
    for [area, measure, figure] in rows {
        out.push_str(&format!("| {area} | {measure} | {figure} |\n"));
    }
    Ok(out)
}

/// `1234567.8` as `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_figure_is_named() {
        let err = summary(&json!({"marketplace": {}}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bench/results.json has no /marketplace/time_to_first_token_ms"),
            "{err}"
        );
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(242_738.0), "242,738");
        assert_eq!(thousands(-1_234_567.8), "-1,234,568");
    }
}
