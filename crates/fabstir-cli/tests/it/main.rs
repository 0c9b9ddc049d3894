//! Tests of the `fabstir` binary against a devnet started in the test process: the commands a
//! user types, their JSON output, and what they refuse.

#![allow(clippy::unwrap_used)] // Panics in tests are test failures.

use std::path::Path;
use std::process::Command;

use fabstir_cli::devnet::{Devnet, DevnetConfig, accounts};

mod gateway;

/// Starts a devnet and writes the client's `sdk.toml` into its folder.
async fn start(config: DevnetConfig) -> Devnet {
    let devnet = Devnet::start(config).await.unwrap();
    let toml = devnet.sdk_config.to_toml().unwrap();
    std::fs::write(devnet.dir.join("sdk.toml"), toml).unwrap();
    devnet
}

/// Writes the key of devnet account `index` to `file` in the devnet's folder; returns its
/// address.
fn write_key(devnet: &Devnet, index: usize, file: &str) -> ethers::types::Address {
    let key = devnet.wallet(index).unwrap();
    let hex: String = key
        .signer()
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(devnet.dir.join(file), format!("0x{hex}\n")).unwrap();
    ethers::signers::Signer::address(&key)
}

/// The workspace's root.
fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fabstir(dir: &Path, args: &[&str]) -> std::process::Output {
    fabstir_as(dir, "client.key", args)
}

/// Runs `fabstir` with the key in `dir/key_file`.
fn fabstir_as(dir: &Path, key_file: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fabstir"))
        .arg("--config")
        .arg(dir.join("sdk.toml"))
        .arg("--key-file")
        .arg(dir.join(key_file))
        .args(args)
        .env_remove("FABSTIR_KEY")
        .output()
        .unwrap()
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // With --json, stdout holds exactly one JSON document.
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_nodes_job_and_balance_against_a_devnet() {
    let mut config = DevnetConfig::new(&workspace());
    config.hosts = 2;
    let model = config.model.name.clone();
    let devnet = start(config).await;
    let dir = devnet.dir.clone();
    write_key(&devnet, accounts::CLIENT, "client.key");
    let hosts = [
        write_key(&devnet, accounts::FIRST_HOST, "host0.key"),
        write_key(&devnet, accounts::FIRST_HOST + 1, "host1.key"),
    ];

    let nodes = json(&fabstir(&dir, &["--json", "nodes", "--model", &model]));
    assert_eq!(nodes.as_array().unwrap().len(), 2, "{nodes}");

    let result = json(&fabstir(
        &dir,
        &[
            "--json",
            "ask",
            "",
            "--model",
            &model,
            "--pay",
            "USDC",
            "--max-tokens",
            "12",
        ],
    ));
    assert_eq!(result["token"], "USDC");
    assert!(result["tokens_used"].as_u64().unwrap() > 0);
    let text = result["text"].as_str().unwrap();
    assert_eq!(
        fabstir_storage::cid_of(text.as_bytes()).to_string(),
        result["cid"].as_str().unwrap(),
        "the reported text is what the host signed"
    );

    let job = result["job"].as_u64().unwrap().to_string();
    let status = json(&fabstir(&dir, &["--json", "job", &job]));
    assert_eq!(status["state"], "PaymentReleased");
    assert_eq!(status["result_cid"], result["cid"]);

    let balances = json(&fabstir(&dir, &["--json", "balance"]));
    let usdc = balances["USDC"].as_str().unwrap();
    assert!(fabstir_core::TokenAmount::parse(usdc, 6).is_ok(), "{usdc}");

    // The host that served was credited what the job paid; it withdraws it to its wallet.
    let served: ethers::types::Address =
        serde_json::from_value(result["host_address"].clone()).unwrap();
    let index = hosts
        .iter()
        .position(|h| *h == served)
        .expect("a devnet host");
    let host_key = format!("host{index}.key");
    let paid = result["paid"].as_str().unwrap();
    let before = json(&fabstir_as(&dir, &host_key, &["--json", "balance"]));
    assert_eq!(before["USDC_credit"].as_str(), Some(paid), "{before}");
    let withdrawn = json(&fabstir_as(
        &dir,
        &host_key,
        &["--json", "withdraw", "--token", "USDC"],
    ));
    assert_eq!(withdrawn["withdrawn"].as_str(), Some(paid), "{withdrawn}");
    let after = json(&fabstir_as(&dir, &host_key, &["--json", "balance"]));
    assert!(after.get("USDC_credit").is_none(), "{after}");
    let units = |v: &serde_json::Value| {
        fabstir_core::TokenAmount::parse(v["USDC"].as_str().unwrap(), 6).unwrap()
    };
    assert_eq!(
        units(&after),
        units(&before)
            .checked_add(fabstir_core::TokenAmount::parse(paid, 6).unwrap())
            .unwrap()
    );
    let again = json(&fabstir_as(&dir, &host_key, &["--json", "withdraw"]));
    assert_eq!(again["withdrawn"], "0", "nothing more is owed: {again}");

    // A reader that goes away (`fabstir nodes | head -0`) does not make the command fail.
    let mut closed = Command::new(env!("CARGO_BIN_EXE_fabstir"))
        .arg("--config")
        .arg(dir.join("sdk.toml"))
        .args(["nodes", "--model", &model])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(closed.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // No key, no spending: a clear error, nothing sent.
    let refused = Command::new(env!("CARGO_BIN_EXE_fabstir"))
        .arg("--config")
        .arg(dir.join("sdk.toml"))
        .args(["ask", "", "--model", &model])
        .env_remove("FABSTIR_KEY")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("FABSTIR_KEY"));
}
