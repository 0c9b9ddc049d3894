//! `fabstir gateway` on a devnet, driven by the official `openai` Python package and by curl:
//! what they are told agrees with what the chain settled, to the base unit, and a request over
//! the cap sends no transaction.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ethers::providers::{Http, Middleware, Provider};
use fabstir_cli::devnet::{DevnetConfig, accounts};
use fabstir_core::{JobId, TokenAmount};
use fabstir_sdk::FabstirSdk;
use serde_json::Value;

use super::{start, workspace, write_key};

/// USDC per token the devnet's host asks: 100 base units, so the 1% fee is not rounded away.
const PRICE: &str = "0.0001";
/// The per-request cap: 16 tokens at that price.
const CAP: &str = "0.0016";

/// A payment token's price per token on the devnet, and its decimals.
struct Priced {
    price: &'static str,
    decimals: u8,
}

impl Priced {
    fn parse(&self, text: &str) -> TokenAmount {
        TokenAmount::parse(text, self.decimals).unwrap()
    }
}

const USDC: Priced = Priced {
    price: PRICE,
    decimals: 6,
};
/// The devnet's ETH price: 1 gwei per token.
const ETH: Priced = Priced {
    price: "0.000000001",
    decimals: 18,
};

/// A running `fabstir gateway` and its log lines.
struct Gateway {
    child: Child,
    url: String,
    log: mpsc::Receiver<String>,
}

impl Gateway {
    fn start(dir: &Path, model: &str, pay: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fabstir"))
            .arg("--config")
            .arg(dir.join("sdk.toml"))
            .arg("--key-file")
            .arg(dir.join("client.key"))
            .args(["gateway", "--listen", "127.0.0.1:0", "--pay", pay])
            .args(["--max-per-request", CAP, "--model", model])
            .env_remove("FABSTIR_KEY")
            .env_remove("FABSTIR_GATEWAY_API_KEY")
            .env("RUST_LOG", "fabstir_gateway=info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gateway = Self {
            child,
            url: String::new(),
            log,
        };
        let banner = gateway.wait_for("gateway on http://");
        let at = banner.find("http://").unwrap();
        gateway.url = banner[at..].split_whitespace().next().unwrap().to_owned();
        gateway
    }

    /// The next log line containing `needle` (panics after 60 s or if the gateway exits).
    fn wait_for(&mut self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "no `{needle}` from the gateway ({e}): {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    /// Stops it with ctrl-c (SIGINT), as a user would; returns its closing line.
    fn interrupt(mut self) -> String {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let line = self.wait_for("gateway stopped");
        assert!(self.child.wait().unwrap().success());
        line
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks a completion's settlement against the chain; returns what the job cost (host and fee).
async fn settled(
    sdk: &FabstirSdk,
    fabstir: &Value,
    completion_tokens: &Value,
    pay: &Priced,
) -> TokenAmount {
    let job = JobId(fabstir["job"].as_u64().unwrap());
    let status = sdk.job_status(job).await.unwrap();
    let chain = status.settlement.expect("settled on chain");
    assert_eq!(
        completion_tokens.as_u64(),
        Some(chain.tokens_used),
        "{fabstir}"
    );
    assert_eq!(
        fabstir["tokens_receipted"].as_u64(),
        Some(chain.tokens_used)
    );
    let paid = chain.paid.base_units().to_string();
    assert_eq!(
        fabstir["paid_base_units"].as_str(),
        Some(paid.as_str()),
        "{fabstir}"
    );
    let units = |field: &str| pay.parse(fabstir[field].as_str().unwrap());
    assert_eq!(units("paid"), chain.paid);
    assert_eq!(units("fee"), chain.fee);
    assert_eq!(units("refund"), chain.refund);
    // The host was paid its price for every receipted token, less the fee.
    let price = pay.parse(pay.price);
    let cost = price
        .checked_mul(u32::try_from(chain.tokens_used).unwrap())
        .unwrap();
    assert_eq!(chain.paid.checked_add(chain.fee), Some(cost));
    assert_eq!(
        fabstir["result_cid"].as_str().map(str::to_owned),
        chain.result_cid.map(|cid| cid.to_string())
    );
    cost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_clients_pay_the_marketplace_through_the_gateway() {
    let root = workspace();
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask tools`",
        python.display()
    );
    let mut config = DevnetConfig::new(&root);
    config.hosts = 1;
    config.prices.insert("USDC".to_owned(), PRICE.to_owned());
    let model = config.model.name.clone();
    let devnet = start(config).await;
    let dir = devnet.dir.clone();
    let client = write_key(&devnet, accounts::CLIENT, "client.key");
    let sdk = FabstirSdk::connect(devnet.sdk_config.clone(), &devnet.deployment)
        .await
        .unwrap();
    let chain = Provider::<Http>::try_from(devnet.anvil.endpoint()).unwrap();
    let mut gateway = Gateway::start(&dir, &model, "USDC");
    let base = gateway.url.clone();
    let mut spent = TokenAmount::ZERO;

    // The official client: whole and streamed chat, an unknown model, a request over the cap.
    let script = root.join("crates/fabstir-cli/tests/clients/openai_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .args([&base, &model])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();

    let whole = &out["whole"];
    assert_eq!(whole["model"], model.as_str());
    assert_eq!(whole["finish_reason"], "length", "{whole}");
    assert_eq!(whole["usage"]["completion_tokens"], 12, "{whole}");
    let text = whole["text"].as_str().unwrap();
    assert!(!text.is_empty());
    assert_eq!(
        fabstir_storage::cid_of(text.as_bytes()).to_string(),
        whole["fabstir"]["result_cid"].as_str().unwrap(),
        "the text the client got is what the host settled for"
    );
    spent = spent
        .checked_add(
            settled(
                &sdk,
                &whole["fabstir"],
                &whole["usage"]["completion_tokens"],
                &USDC,
            )
            .await,
        )
        .unwrap();

    let streamed = &out["stream"];
    let usage = &streamed["usage"];
    assert_eq!(usage["completion_tokens"], 10, "{streamed}");
    assert_eq!(usage["total_tokens"], usage["completion_tokens"]);
    // A role chunk, one chunk per token, the finish chunk and the usage chunk.
    assert!(streamed["chunks"].as_u64().unwrap() >= 3, "{streamed}");
    let text = streamed["text"].as_str().unwrap();
    assert_eq!(
        fabstir_storage::cid_of(text.as_bytes()).to_string(),
        streamed["fabstir"]["result_cid"].as_str().unwrap()
    );
    spent = spent
        .checked_add(
            settled(
                &sdk,
                &streamed["fabstir"],
                &usage["completion_tokens"],
                &USDC,
            )
            .await,
        )
        .unwrap();

    let unknown = &out["unknown_model"];
    assert_eq!(unknown["class"], "NotFoundError", "{unknown}");
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["code"], "model_not_found");

    let over = &out["over_budget"];
    assert_eq!(over["status"], 402, "{over}");
    assert_eq!(over["code"], "budget_exceeded");

    let models = out["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{models:?}");
    assert_eq!(models[0]["id"], model.as_str());
    let hosts = models[0]["fabstir"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["price_per_token"], PRICE);

    for _ in 0..2 {
        let line = gateway.wait_for("request served");
        assert!(line.contains(&format!("model={model}")), "{line}");
        assert!(line.contains("ttft_ms="), "{line}");
    }

    // curl: a whole request with the settlement in headers, and a stream ending in [DONE].
    let body = serde_json::json!({
        "model": model,
        "prompt": "The king",
        "max_tokens": 6,
        "temperature": 0,
    });
    let completions = format!("{base}/completions");
    let answer = curl(&[
        "-i",
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
        &completions,
    ]);
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let json: Value = serde_json::from_str(json).unwrap();
    let job = json["fabstir"]["job"].as_u64().unwrap();
    assert!(head.contains(&format!("x-fabstir-job: {job}")), "{head}");
    assert_eq!(json["object"], "text_completion");
    spent = spent
        .checked_add(
            settled(
                &sdk,
                &json["fabstir"],
                &json["usage"]["completion_tokens"],
                &USDC,
            )
            .await,
        )
        .unwrap();

    let mut body = body;
    body["stream"] = true.into();
    let events = curl(&[
        "-N",
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
        &completions,
    ]);
    let data: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{events}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
    assert_eq!(
        fabstir_storage::cid_of(text.as_bytes()).to_string(),
        last["fabstir"]["result_cid"].as_str().unwrap()
    );
    // Greedy, the same prompt and length: the same text as the whole request.
    assert_eq!(text, json["choices"][0]["text"].as_str().unwrap());
    spent = spent
        .checked_add(settled(&sdk, &last["fabstir"], &6.into(), &USDC).await)
        .unwrap();

    // Over the cap: refused before any transaction (the nonce counts every transaction the
    // client's key signed), and no USDC moved.
    let nonce = chain.get_transaction_count(client, None).await.unwrap();
    let balance = sdk.balance(client, "USDC").await.unwrap();
    let over = serde_json::json!({"model": model, "prompt": "The king", "max_tokens": 17});
    let answer = curl(&[
        "-i",
        "-H",
        "content-type: application/json",
        "-d",
        &over.to_string(),
        &completions,
    ]);
    assert!(answer.starts_with("HTTP/1.1 402"), "{answer}");
    assert!(answer.contains("budget_exceeded"), "{answer}");
    assert_eq!(
        chain.get_transaction_count(client, None).await.unwrap(),
        nonce
    );
    assert_eq!(sdk.balance(client, "USDC").await.unwrap(), balance);

    // An unknown model from curl: OpenAI's error body.
    let missing = serde_json::json!({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]});
    let answer = curl(&[
        "-i",
        "-H",
        "content-type: application/json",
        "-d",
        &missing.to_string(),
        &format!("{base}/chat/completions"),
    ]);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let error: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");

    // Ctrl-c: the gateway stops and says what the day cost, which is what the chain settled.
    let closing = gateway.interrupt();
    let expected = USDC.parse(closing.rsplit(' ').nth(1).unwrap());
    assert_eq!(expected, spent, "{closing}");

    // Paid in ETH: another gateway, the same wallet.
    let eth = Gateway::start(&dir, &model, "ETH");
    let whole = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "Speak of the king."}],
        "max_tokens": 5,
    });
    let answer = curl(&[
        "-H",
        "content-type: application/json",
        "-d",
        &whole.to_string(),
        &format!("{}/chat/completions", eth.url),
    ]);
    let json: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["fabstir"]["token"], "ETH", "{json}");
    let cost = settled(
        &sdk,
        &json["fabstir"],
        &json["usage"]["completion_tokens"],
        &ETH,
    )
    .await;
    let closing = eth.interrupt();
    assert_eq!(
        ETH.parse(closing.rsplit(' ').nth(1).unwrap()),
        cost,
        "{closing}"
    );
    devnet.stop().await.unwrap();
}
