//! The OpenAI-compatible backend against a local server-sent-events fixture.

use std::time::Duration;

use fabstir_inference::{
    Error, FinishReason, GenerateRequest, GeneratedToken, InferenceBackend, OpenAiApi,
    OpenAiBackend, OpenAiConfig, Usage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the fixture answers.
enum Reply {
    /// 200 with these events (each sent as `data: ...`), one every `delay`.
    Events {
        events: Vec<String>,
        delay: Duration,
    },
    /// An error status with a body.
    Status(u16, &'static str),
    /// 200 and headers, then silence.
    Silent,
}

/// What the fixture saw.
struct Served {
    request: String,
    events_sent: usize,
    client_left: bool,
}

/// Serves one request on 127.0.0.1 and returns its base URL.
async fn fixture(reply: Reply) -> (String, JoinHandle<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fixture");
    let url = format!("http://{}", listener.local_addr().expect("fixture address"));
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let request = read_request(&mut socket).await;
        let mut served = Served {
            request,
            events_sent: 0,
            client_left: false,
        };
        match reply {
            Reply::Status(status, body) => {
                let response = format!(
                    "HTTP/1.1 {status} Oops\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
            Reply::Silent => {
                let _ = socket.write_all(sse_headers()).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Reply::Events { events, delay } => {
                if socket.write_all(sse_headers()).await.is_err() {
                    served.client_left = true;
                }
                for event in events {
                    if served.client_left {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    let frame = format!("data: {event}\n\n");
                    match socket.write_all(frame.as_bytes()).await {
                        Ok(()) => served.events_sent += 1,
                        Err(_) => served.client_left = true,
                    }
                }
                let _ = socket.shutdown().await;
            }
        }
        served
    });
    (url, task)
}

fn sse_headers() -> &'static [u8] {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
}

async fn read_request(socket: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.expect("read request");
        assert!(n > 0, "client closed before sending its request");
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

fn backend(url: &str, api: OpenAiApi) -> OpenAiBackend {
    OpenAiBackend::new(OpenAiConfig {
        base_url: url.to_owned(),
        model: "tiny".into(),
        api,
        api_key: Some("sk-test".into()),
        idle_timeout: Duration::from_millis(300),
        channel_capacity: 2,
        ..OpenAiConfig::default()
    })
    .expect("backend builds")
}

fn request(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        prompt: prompt.into(),
        max_tokens: 3,
        temperature: 0.0,
        seed: 7,
        ..GenerateRequest::default()
    }
}

fn text_event(text: &str, finish: Option<&str>) -> String {
    serde_json::json!({
        "object": "text_completion",
        "choices": [{ "index": 0, "text": text, "finish_reason": finish }],
    })
    .to_string()
}

#[tokio::test]
async fn completions_stream_text_and_usage() {
    let events = vec![
        text_event("Hel", None),
        text_event("lo", None),
        text_event("!", Some("length")),
        r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}"#
            .into(),
        "[DONE]".into(),
    ];
    let (url, server) = fixture(Reply::Events {
        events,
        delay: Duration::from_millis(5),
    })
    .await;
    let backend = backend(&url, OpenAiApi::Completions);
    assert_eq!(backend.model().name, "tiny");
    let mut stream = backend
        .generate(request("Say hi"))
        .await
        .expect("stream starts");
    let mut texts = Vec::new();
    while let Some(token) = stream.next_token().await {
        let token = token.expect("token");
        assert_eq!(token.id, GeneratedToken::UNKNOWN_ID);
        texts.push(token.text);
    }
    assert_eq!(texts, ["Hel", "lo", "!"]);
    assert_eq!(stream.finish_reason(), Some(FinishReason::MaxTokens));
    assert_eq!(
        stream.usage(),
        Usage {
            prompt_tokens: 4,
            completion_tokens: 3
        }
    );

    let served = server.await.expect("fixture");
    let (head, body) = served
        .request
        .split_once("\r\n\r\n")
        .expect("request has a body");
    assert!(head.starts_with("POST /v1/completions HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: bearer sk-test"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body["prompt"], "Say hi");
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["max_tokens"], 3);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["stream"], true);
}

#[tokio::test]
async fn chat_completions_stream_deltas() {
    let delta = |content: Option<&str>, finish: Option<&str>| {
        serde_json::json!({
            "object": "chat.completion.chunk",
            "choices": [{ "index": 0, "delta": { "content": content }, "finish_reason": finish }],
        })
        .to_string()
    };
    let events = vec![
        r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#.into(),
        delta(Some("Hi"), None),
        delta(Some(" there"), None),
        delta(None, Some("stop")),
    ];
    // No [DONE] and no usage: the close after a finish reason ends the stream.
    let (url, server) = fixture(Reply::Events {
        events,
        delay: Duration::ZERO,
    })
    .await;
    let stream = backend(&url, OpenAiApi::ChatCompletions)
        .generate(request("Greet me"))
        .await
        .expect("stream starts");
    let cancel = stream.cancellation_token();
    let mut stream = stream;
    let mut text = String::new();
    while let Some(token) = stream.next_token().await {
        text.push_str(&token.expect("token").text);
    }
    assert_eq!(text, "Hi there");
    assert_eq!(stream.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(
        stream.usage(),
        Usage {
            prompt_tokens: 0,
            completion_tokens: 2
        }
    );
    assert!(!cancel.is_cancelled());

    let served = server.await.expect("fixture");
    let (head, body) = served
        .request
        .split_once("\r\n\r\n")
        .expect("request has a body");
    assert!(
        head.starts_with("POST /v1/chat/completions HTTP/1.1"),
        "{head}"
    );
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], "Greet me");
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let events = (0..2000)
        .map(|i| text_event(&format!("t{i} "), None))
        .collect();
    let (url, server) = fixture(Reply::Events {
        events,
        delay: Duration::from_millis(2),
    })
    .await;
    let mut stream = backend(&url, OpenAiApi::Completions)
        .generate(request("go"))
        .await
        .expect("stream starts");
    for _ in 0..3 {
        stream
            .next_token()
            .await
            .expect("a token")
            .expect("no error");
    }
    drop(stream);
    let served = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("fixture stops once the client has gone")
        .expect("fixture");
    assert!(served.client_left);
    assert!(served.events_sent < 2000, "sent {}", served.events_sent);
}

#[tokio::test]
async fn server_failures_are_clear_errors() {
    let (url, _server) = fixture(Reply::Status(500, "boom: model not loaded")).await;
    let err = backend(&url, OpenAiApi::Completions)
        .generate(request("x"))
        .await
        .expect_err("500 is an error");
    assert!(
        matches!(&err, Error::HttpStatus { status: 500, body, .. } if body.contains("boom")),
        "{err}"
    );

    let (url, _server) = fixture(Reply::Silent).await;
    let mut stream = backend(&url, OpenAiApi::Completions)
        .generate(request("x"))
        .await
        .expect("headers arrive");
    let err = stream
        .next_token()
        .await
        .expect("an item")
        .expect_err("idle timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(stream.next_token().await.is_none());

    for events in [vec!["not json".to_owned()], vec![text_event("a", None)]] {
        let (url, _server) = fixture(Reply::Events {
            events,
            delay: Duration::ZERO,
        })
        .await;
        let stream = backend(&url, OpenAiApi::Completions)
            .generate(request("x"))
            .await
            .expect("headers arrive");
        let err = stream.collect_text().await.expect_err("bad stream");
        assert!(matches!(err, Error::BadServerResponse(_)), "{err}");
    }

    // Nothing listens on a port just freed.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let err = backend(&url, OpenAiApi::Completions)
        .generate(request("x"))
        .await
        .expect_err("connection refused");
    assert!(matches!(err, Error::Http { .. }), "{err}");
}
