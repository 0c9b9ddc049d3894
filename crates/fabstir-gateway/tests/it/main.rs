//! The gateway over HTTP on 127.0.0.1, in front of an SDK on the in-memory chain and network
//! (the layers below pass the same conformance suites as the real ones; the devnet test with
//! the official `openai` package and curl is in `fabstir-cli`). Money is asserted to the base
//! unit: what the client's balance lost is what the response says was paid.

#![allow(clippy::unwrap_used)] // Panics in tests are test failures.

mod http;

use std::sync::Arc;
use std::time::Duration;

use ethers::signers::{LocalWallet, Signer as _};
use fabstir_core::primitives::Address;
use fabstir_core::{ModelId, PaymentToken, TokenAmount};
use fabstir_gateway::{Gateway, GatewayConfig};
use fabstir_sdk::memory::{HostBehaviour, InMemoryChain, InMemoryNetwork, ScriptedHost};
use fabstir_sdk::{FabstirSdk, SdkConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use http::{Answer, post, sse_data};

const MODEL: &str = "stories";
/// Base units per token of every scripted host.
const PRICE: u64 = 100;
/// What the client holds at the start.
const FUNDS: u64 = 1_000_000;

fn usdc() -> PaymentToken {
    PaymentToken::erc20(Address::repeat_byte(0xcc), "USDC", 6)
}

fn wallet() -> LocalWallet {
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        .parse::<LocalWallet>()
        .unwrap()
        .with_chain_id(31_337u64)
}

fn units(n: u64) -> TokenAmount {
    TokenAmount::from_base_units(n)
}

/// A gateway on 127.0.0.1 over scripted hosts; stops when dropped.
struct Fixture {
    url: String,
    chain: Arc<InMemoryChain>,
    gateway: Arc<Gateway>,
    funds: u64,
    _stop: tokio_util::sync::DropGuard,
}

impl Fixture {
    async fn new(hosts: Vec<ScriptedHost>, config: GatewayConfig) -> Self {
        Self::build(hosts, config, 1, FUNDS).await
    }

    /// Hosts tried per request: `max_attempts`; the wallet holds `funds` base units.
    async fn build(
        hosts: Vec<ScriptedHost>,
        config: GatewayConfig,
        max_attempts: u32,
        funds: u64,
    ) -> Self {
        let chain = Arc::new(InMemoryChain::new(
            31_337,
            vec![usdc()],
            Address::repeat_byte(0xee),
        ));
        chain.mint(wallet().address(), usdc().address(), units(funds));
        let network = Arc::new(InMemoryNetwork::new(chain.clone(), hosts));
        let mut sdk_config = SdkConfig::default();
        sdk_config.timeouts.claim = Duration::from_millis(300);
        sdk_config.timeouts.stream_stall = Duration::from_millis(300);
        sdk_config.timeouts.job_deadline = Duration::from_secs(60);
        sdk_config.poll_interval = Duration::from_millis(10);
        sdk_config.max_attempts = max_attempts;
        let sdk = FabstirSdk::with_layers(sdk_config, chain.clone(), network);
        sdk.set_signer(wallet()).unwrap();
        let gateway = Gateway::new(sdk, config).unwrap();
        let stop = CancellationToken::new();
        let addr = gateway
            .spawn("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
        Self {
            url: format!("http://{addr}"),
            chain,
            gateway,
            funds,
            _stop: stop.drop_guard(),
        }
    }

    async fn honest(config: GatewayConfig) -> Self {
        Self::new(vec![host(1, HostBehaviour::Honest)], config).await
    }

    fn spent(&self) -> u64 {
        let left = self.chain.balance_of(wallet().address(), usdc().address());
        self.funds - left.base_units().as_u64()
    }

    /// POSTs a chat completion with `params` and checks the answer's `status`.
    async fn chat(&self, params: Value, status: u16) -> Answer {
        let answer = self.post("/v1/chat/completions", chat(params)).await;
        assert_eq!(answer.status, status, "{}", answer.body);
        answer
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        post(&format!("{}{path}", self.url), None, body).await
    }
}

fn host(index: u8, behaviour: HostBehaviour) -> ScriptedHost {
    ScriptedHost::new(
        index,
        ModelId::from_name(MODEL),
        usdc().address(),
        units(PRICE),
        behaviour,
    )
}

fn config() -> GatewayConfig {
    GatewayConfig {
        models: vec![MODEL.to_owned(), "not-served".to_owned()],
        ..GatewayConfig::default()
    }
}

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": 10,
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The error code of an OpenAI error body.
fn code(answer: &Answer) -> String {
    answer.json()["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_whole_chat_completion_pays_for_its_receipted_tokens() {
    let f = Fixture::honest(config()).await;
    let answer = f.chat(json!({}), 200).await;
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 0, "completion_tokens": 5, "total_tokens": 5})
    );
    // 5 tokens at 100 base units: 495 to the host, a 1% fee of 5, the rest refunded.
    let fabstir = &body["fabstir"];
    assert_eq!(fabstir["paid_base_units"], "495");
    assert_eq!(fabstir["paid"], "0.000495");
    assert_eq!(fabstir["fee"], "0.000005");
    assert_eq!(fabstir["tokens_receipted"], 5);
    assert_eq!(f.spent(), 500);
    assert_eq!(f.gateway.spent_today(), units(500));
    assert_eq!(answer.header("x-fabstir-paid"), Some("0.000495 USDC"));
    assert_eq!(
        answer.header("x-fabstir-job"),
        Some(fabstir["job"].to_string().as_str())
    );
    assert_eq!(
        answer.header("x-fabstir-result-cid"),
        fabstir["result_cid"].as_str()
    );
}

#[tokio::test]
async fn a_streamed_chat_sends_chunks_then_usage_then_done() {
    let f = Fixture::honest(config()).await;
    let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = f.post("/v1/chat/completions", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_data(&answer.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert!(chunks.windows(2).all(|w| w[0]["id"] == w[1]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 ");
    // Every chunk but the last carries `usage: null`; the last has no choices and the usage.
    let (usage, rest) = chunks.split_last().unwrap();
    assert!(rest.iter().all(|c| c["usage"].is_null()));
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    let finish = rest.last().unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["fabstir"]["paid_base_units"], "495");
    assert_eq!(f.spent(), 500);
}

#[tokio::test]
async fn completions_stream_without_usage_and_stop_at_max_tokens() {
    let mut three = host(1, HostBehaviour::Honest);
    three.tokens = 3;
    let f = Fixture::new(vec![three], config()).await;
    let body = json!({"model": MODEL, "prompt": ["Once"], "max_tokens": 3, "stream": true});
    let answer = f.post("/v1/completions", body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = sse_data(&answer.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    assert_eq!(f.spent(), 300);
}

#[tokio::test]
async fn the_model_field_routes_and_an_unknown_model_is_a_404() {
    let other = ScriptedHost::new(
        2,
        ModelId::from_name("other"),
        usdc().address(),
        units(PRICE),
        HostBehaviour::Honest,
    );
    let f = Fixture::new(vec![host(1, HostBehaviour::Honest), other], config()).await;
    let answer = f.chat(json!({"model": "other"}), 200).await;
    assert_eq!(answer.json()["model"], "other");
    let host = answer.json()["fabstir"]["host_address"].clone();
    assert_eq!(host, format!("{:#x}", Address::repeat_byte(2)));

    let spent = f.spent();
    let answer = f.chat(json!({"model": "gpt-4o"}), 404).await;
    assert_eq!(code(&answer), "model_not_found");
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    assert_eq!(answer.json()["error"]["param"], "model");
    assert_eq!(f.spent(), spent, "nothing is spent on an unknown model");
}

#[tokio::test]
async fn the_per_request_cap_refuses_before_any_transaction() {
    let f = Fixture::honest(GatewayConfig {
        max_per_request: Some(units(999)),
        ..config()
    })
    .await;
    // 10 tokens at 100 cost 1,000: one base unit over the cap.
    let answer = f.chat(json!({}), 402).await;
    assert_eq!(code(&answer), "budget_exceeded");
    assert_eq!(f.spent(), 0);
    assert!(f.chain.escrowed(usdc().address()).is_zero());
    // 9 tokens fit.
    f.chat(json!({"max_tokens": 9}), 200).await;
    assert_eq!(f.spent(), 500);
}

#[tokio::test]
async fn the_daily_cap_counts_what_was_spent_and_then_refuses() {
    let f = Fixture::honest(GatewayConfig {
        max_per_day: Some(units(1_900)),
        ..config()
    })
    .await;
    // A 10-token request needs 1,000 left and spends 500 (5 tokens generated).
    for _ in 0..2 {
        f.chat(json!({}), 200).await;
    }
    assert_eq!(f.spent(), 1_000);
    // 900 left: a 10-token request could cost 1,000, so it is refused before anything is posted.
    let answer = f.chat(json!({}), 429).await;
    assert_eq!(code(&answer), "daily_budget_exhausted");
    assert_eq!(answer.json()["error"]["type"], "insufficient_quota");
    assert_eq!(f.spent(), 1_000);
    // 4 tokens (400) fit, then 5 (500) reach the day's cap exactly, and then nothing fits.
    for (max_tokens, spent) in [(4, 1_400), (5, 1_900)] {
        let answer = f
            .post(
                "/v1/chat/completions",
                chat(json!({"max_tokens": max_tokens})),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(f.spent(), spent);
    }
    f.chat(json!({"max_tokens": 1}), 429).await;
    assert_eq!(f.spent(), 1_900);
}

#[tokio::test]
async fn a_wallet_that_cannot_pay_is_a_402_and_loses_nothing() {
    // 300 base units; a 10-token job at 100 escrows 1,000.
    let f = Fixture::build(vec![host(1, HostBehaviour::Honest)], config(), 1, 300).await;
    for stream in [false, true] {
        let answer = f.chat(json!({"stream": stream}), 402).await;
        assert_eq!(code(&answer), "insufficient_funds", "{}", answer.body);
        assert_eq!(answer.json()["error"]["type"], "insufficient_quota");
    }
    assert_eq!(f.spent(), 0);
    assert!(f.gateway.spent_today().is_zero());
    // 3 tokens (300) can be paid.
    f.chat(json!({"max_tokens": 3}), 200).await;
    assert_eq!(f.spent(), 300);
}

#[tokio::test]
async fn a_price_cap_below_every_host_is_a_503() {
    let f = Fixture::honest(GatewayConfig {
        max_price: Some(units(PRICE - 1)),
        ..config()
    })
    .await;
    let answer = f.chat(json!({}), 503).await;
    assert_eq!(code(&answer), "no_acceptable_host");
    assert_eq!(f.spent(), 0);
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_cost_nothing() {
    let f = Fixture::honest(config()).await;
    let url = format!("{}/v1/chat/completions", f.url);
    let answer = http::post_raw(&url, None, "{not json").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    let cases = [
        (json!({"model": MODEL}), None),
        (chat(json!({"n": 2})), Some("n")),
        (chat(json!({"temperature": 2.5})), Some("temperature")),
        (chat(json!({"max_tokens": 0})), Some("max_tokens")),
        (chat(json!({"messages": []})), Some("messages")),
        (
            chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            Some("messages"),
        ),
    ];
    for (body, param) in cases {
        let answer = f.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert_eq!(answer.json()["error"]["param"].as_str(), param, "{body}");
    }
    let answer = f
        .post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": ["a", "b"]}),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let answer = f.post("/v1/embeddings", json!({})).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(code(&answer), "unknown_url");
    assert_eq!(f.spent(), 0);
}

#[tokio::test]
async fn a_configured_api_key_guards_the_endpoints() {
    let f = Fixture::honest(GatewayConfig {
        api_key: Some("sk-local".to_owned()),
        ..config()
    })
    .await;
    let url = format!("{}/v1/chat/completions", f.url);
    for key in [None, Some("sk-wrong"), Some("sk-local-longer")] {
        let answer = post(&url, key, chat(json!({}))).await;
        assert_eq!(answer.status, 401, "{key:?}: {}", answer.body);
        assert_eq!(code(&answer), "invalid_api_key");
    }
    assert_eq!(f.spent(), 0);
    let answer = post(&url, Some("sk-local"), chat(json!({}))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn a_host_failing_mid_job_is_a_502_or_an_error_event() {
    let f = Fixture::new(vec![host(1, HostBehaviour::DiesAfter(2))], config()).await;
    let answer = f.chat(json!({}), 502).await;
    assert_eq!(code(&answer), "marketplace_error");
    // Streamed, the two tokens are already sent: an error event ends the stream, no [DONE].
    let answer = f.chat(json!({"stream": true}), 200).await;
    let events = sse_data(&answer.body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "marketplace_error");
    assert!(!events.iter().any(|e| e == "[DONE]"));
}

#[tokio::test]
async fn a_failover_after_text_was_streamed_ends_the_stream_with_an_error_and_the_result() {
    let hosts = vec![
        host(1, HostBehaviour::DiesAfter(2)),
        host(2, HostBehaviour::Honest),
    ];
    let f = Fixture::build(hosts, config(), 2, FUNDS).await;
    let answer = f.chat(json!({"stream": true}), 200).await;
    let events = sse_data(&answer.body);
    assert!(!events.iter().any(|e| e == "[DONE]"), "{}", answer.body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "host_failed_mid_stream", "{last}");
    let fabstir = &last["fabstir"];
    assert_eq!(fabstir["attempts"], 2);
    assert_eq!(fabstir["text"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(fabstir["tokens_receipted"], 5);
    // Only the job that completed is counted: 5 tokens at 100, fee included.
    assert_eq!(f.gateway.spent_today(), units(500));
    // Whole, nothing was sent early: the second host's text is the answer.
    let answer = f.chat(json!({}), 200).await;
    let json = answer.json();
    assert_eq!(
        json["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 tok4 "
    );
}

#[tokio::test]
async fn models_lists_the_served_ones_with_hosts_and_prices() {
    let f = Fixture::new(
        vec![
            host(1, HostBehaviour::Honest),
            host(2, HostBehaviour::Honest),
        ],
        config(),
    )
    .await;
    let answer = http::get(&format!("{}/v1/models", f.url)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "only the served model: {body}");
    assert_eq!(data[0]["id"], MODEL);
    assert_eq!(data[0]["object"], "model");
    let hosts = data[0]["fabstir"]["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert!(hosts.iter().all(|h| h["price_per_token"] == "0.0001"));
}

#[tokio::test]
async fn metrics_count_requests_tokens_and_first_tokens() {
    let f = Fixture::honest(config()).await;
    let ok = f.post("/v1/chat/completions", chat(json!({}))).await;
    assert_eq!(ok.status, 200);
    let missing = f
        .post("/v1/chat/completions", chat(json!({"model": "nope"})))
        .await;
    assert_eq!(missing.status, 404);
    let metrics = http::get(&format!("{}/metrics", f.url)).await;
    assert_eq!(metrics.status, 200);
    let text = &metrics.body;
    for line in [
        r#"fabstir_gateway_requests_total{endpoint="chat.completions",status="200"} 1"#,
        r#"fabstir_gateway_requests_total{endpoint="chat.completions",status="404"} 1"#,
        "fabstir_gateway_completion_tokens_total 5",
        "fabstir_gateway_time_to_first_token_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
}
