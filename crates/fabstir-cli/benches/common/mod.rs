//! What the marketplace benchmarks share: a `fabstir devnet` in its own process (so that a
//! memory figure is the client's alone), an SDK connected to it, and the measures.

#![allow(dead_code)] // Each benchmark uses its own part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ethers::signers::LocalWallet;
use fabstir_cli::devnet::ModelFiles;
use fabstir_core::Deployment;
use fabstir_inference::{EmbeddedEngine, EngineConfig, GenerateRequest, InferenceBackend};
use fabstir_sdk::{FabstirSdk, SdkConfig};

/// A `fabstir devnet` process; dropping it stops it (hosts and anvil).
pub(crate) struct DevnetProcess {
    child: Child,
    dir: tempfile::TempDir,
}

impl DevnetProcess {
    /// Starts `fabstir devnet` with `hosts` hosts and `extra` arguments, and waits until it
    /// wrote its client files.
    pub(crate) fn start(hosts: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fabstir"))
            .args(["devnet", "--hosts", &hosts.to_string(), "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let devnet = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !devnet.dir().join("client.key").exists() {
            assert!(Instant::now() < deadline, "the devnet did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        devnet
    }

    /// Its folder: deployment, SDK configuration, client key.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        // SIGINT is the devnet's Ctrl-C: it stops its hosts and its anvil, which a plain kill
        // would leave running. The kill is the fallback.
        let interrupted = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while interrupted && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A duration in milliseconds.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// This process's peak resident memory (VmHWM), in KiB.
pub(crate) fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// An SDK connected to the devnet in `dir`, with its client key as the signer.
pub(crate) async fn connect(dir: &Path) -> FabstirSdk {
    let config = SdkConfig::load(&dir.join("sdk.toml")).unwrap();
    let deployment = Deployment::load(&dir.join("deployment.json")).unwrap();
    let sdk = FabstirSdk::connect(config, &deployment).await.unwrap();
    let key = std::fs::read_to_string(dir.join("client.key")).unwrap();
    sdk.set_signer(
        key.trim()
            .trim_start_matches("0x")
            .parse::<LocalWallet>()
            .unwrap(),
    )
    .unwrap();
    sdk
}

/// The embedded engine on the devnet's model, loaded in this process.
pub(crate) fn engine() -> EmbeddedEngine {
    let files = ModelFiles::default_for(&root());
    EmbeddedEngine::load(&EngineConfig {
        name: files.name.clone(),
        checkpoint: files.checkpoint.clone(),
        tokenizer: files.tokenizer.clone(),
        ..EngineConfig::default()
    })
    .unwrap()
}

/// Time to first token and tokens/s (after the first) of `prompt` on the engine alone,
/// sampled at temperature 0.8 with `seed`.
pub(crate) async fn direct_run(
    engine: &EmbeddedEngine,
    prompt: &str,
    max_tokens: u32,
    seed: u64,
) -> (Duration, f64) {
    let start = Instant::now();
    let mut stream = engine
        .generate(GenerateRequest {
            prompt: prompt.into(),
            max_tokens,
            temperature: 0.8,
            top_p: 1.0,
            seed,
            ..GenerateRequest::default()
        })
        .await
        .unwrap();
    let mut first = None;
    let mut last = Duration::ZERO;
    let mut count = 0u64;
    while let Some(token) = stream.next_token().await {
        token.unwrap();
        first.get_or_insert_with(|| start.elapsed());
        last = start.elapsed();
        count += 1;
    }
    let ttft = first.unwrap_or(last);
    let streaming = (last - ttft).as_secs_f64().max(1e-9);
    (ttft, count.saturating_sub(1) as f64 / streaming)
}
