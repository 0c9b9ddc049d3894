//! A backend for servers speaking OpenAI's streaming API (llama.cpp's server, vLLM, Ollama).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;

use crate::{
    Error, FinishReason, GenerateRequest, GeneratedToken, InferenceBackend, ModelInfo, Result,
    TokenSink, TokenStream, Usage,
};

/// The longest server-sent event accepted, so a broken server cannot fill memory.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// How much of an error response's body goes into the error.
const MAX_ERROR_BODY: usize = 512;

/// Which of the two OpenAI endpoints to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenAiApi {
    /// `/v1/completions`: the prompt is sent as is.
    #[default]
    Completions,
    /// `/v1/chat/completions`: the prompt is sent as one user message.
    ChatCompletions,
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// The server's base URL, without `/v1`, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// The model name sent with each request and advertised in [`ModelInfo`].
    pub model: String,
    /// The endpoint to use.
    pub api: OpenAiApi,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to its response's headers.
    pub response_timeout: Duration,
    /// Longest wait between two pieces of the stream.
    pub idle_timeout: Duration,
    /// The model's context length, for [`ModelInfo`] (the API does not report it).
    pub context_length: usize,
    /// The model's vocabulary size, for [`ModelInfo`]; 0 when unknown.
    pub vocab_size: usize,
    /// Pieces buffered for a slow reader before reading from the server pauses.
    pub channel_capacity: usize,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8080".into(),
            model: String::new(),
            api: OpenAiApi::default(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            context_length: 4096,
            vocab_size: 0,
            channel_capacity: 32,
        }
    }
}

/// Streams completions from an OpenAI-compatible server with server-sent events.
///
/// Each streamed piece of text becomes one [`GeneratedToken`] whose id is
/// [`GeneratedToken::UNKNOWN_ID`] (the API does not send ids). Usage is the server's when it
/// reports it (`stream_options.include_usage`); otherwise prompt tokens are 0 and completion
/// tokens count the pieces received.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    client: reqwest::Client,
    config: OpenAiConfig,
    url: String,
    info: ModelInfo,
}

impl OpenAiBackend {
    /// A backend for the server in `config`.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|source| Error::Http {
                url: config.base_url.clone(),
                source,
            })?;
        let path = match config.api {
            OpenAiApi::Completions => "/v1/completions",
            OpenAiApi::ChatCompletions => "/v1/chat/completions",
        };
        let url = format!("{}{path}", config.base_url.trim_end_matches('/'));
        let info = ModelInfo {
            name: config.model.clone(),
            vocab_size: config.vocab_size,
            context_length: config.context_length,
        };
        Ok(Self {
            client,
            config,
            url,
            info,
        })
    }

    fn body(&self, request: &GenerateRequest) -> serde_json::Value {
        let mut body = serde_json::json!({
            "model": self.config.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let (key, value) = match self.config.api {
            OpenAiApi::Completions => ("prompt", serde_json::json!(request.prompt)),
            OpenAiApi::ChatCompletions => (
                "messages",
                serde_json::json!([{ "role": "user", "content": request.prompt }]),
            ),
        };
        body[key] = value;
        body
    }
}

#[async_trait]
impl InferenceBackend for OpenAiBackend {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    async fn generate(&self, request: GenerateRequest) -> Result<TokenStream> {
        request.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| Error::NoRuntime(e.to_string()))?;
        let url = self.url.clone();
        let mut http = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .body(self.body(&request).to_string());
        if let Some(key) = &self.config.api_key {
            http = http.bearer_auth(key);
        }
        let response = tokio::time::timeout(self.config.response_timeout, http.send())
            .await
            .map_err(|_| Error::Timeout {
                url: url.clone(),
                waiting_for: "the response",
                after: self.config.response_timeout,
            })?
            .map_err(|source| Error::Http {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::HttpStatus {
                url,
                status: status.as_u16(),
                body: body.chars().take(MAX_ERROR_BODY).collect(),
            });
        }
        let (sink, stream) = TokenStream::channel(self.config.channel_capacity, 0, &request.cancel);
        let api = self.config.api;
        let idle = self.config.idle_timeout;
        runtime.spawn(async move {
            match pump(response, api, idle, &url, &sink).await {
                Ok(Some((reason, usage))) => sink.finish(reason, usage).await,
                Ok(None) => {}
                Err(error) => sink.fail(error).await,
            }
        });
        Ok(stream)
    }
}

/// Moves the server's events into the sink; `None` when the consumer went away.
async fn pump(
    response: reqwest::Response,
    api: OpenAiApi,
    idle: Duration,
    url: &str,
    sink: &TokenSink,
) -> Result<Option<(FinishReason, Option<Usage>)>> {
    let mut body = response.bytes_stream();
    let mut parser = SseParser::default();
    let mut finish = None;
    let mut usage = None;
    let cancel = sink.cancellation_token().clone();
    loop {
        let next = cancel
            .run_until_cancelled(tokio::time::timeout(idle, body.next()))
            .await;
        let chunk = match next {
            None => return Ok(None),
            Some(Err(_)) => {
                return Err(Error::Timeout {
                    url: url.to_owned(),
                    waiting_for: "the next event",
                    after: idle,
                });
            }
            Some(Ok(None)) => {
                // The server closed the stream; fine once it has said how it finished.
                return match finish {
                    Some(reason) => Ok(Some((reason, usage))),
                    None => Err(Error::BadServerResponse(
                        "the event stream ended before [DONE] or a finish reason".into(),
                    )),
                };
            }
            Some(Ok(Some(Err(source)))) => {
                return Err(Error::Http {
                    url: url.to_owned(),
                    source,
                });
            }
            Some(Ok(Some(Ok(bytes)))) => bytes,
        };
        for data in parser.push(&chunk)? {
            if data.trim() == "[DONE]" {
                return Ok(Some((finish.unwrap_or(FinishReason::Stop), usage)));
            }
            let event: Chunk = serde_json::from_str(&data).map_err(|e| {
                Error::BadServerResponse(format!(
                    "event is not a completion chunk ({e}): {}",
                    data.chars().take(MAX_ERROR_BODY).collect::<String>()
                ))
            })?;
            if let Some(error) = event.error {
                return Err(Error::BadServerResponse(format!("server error: {error}")));
            }
            if let Some(u) = event.usage {
                usage = Some(Usage {
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                });
            }
            for choice in event.choices.into_iter().filter(|c| c.index == 0) {
                let text = match api {
                    OpenAiApi::Completions => choice.text,
                    OpenAiApi::ChatCompletions => choice.delta.and_then(|d| d.content),
                };
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    let token = GeneratedToken {
                        id: GeneratedToken::UNKNOWN_ID,
                        text,
                    };
                    if sink.send(token).await.is_err() {
                        return Ok(None);
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    finish = Some(match reason.as_str() {
                        "length" => FinishReason::MaxTokens,
                        _ => FinishReason::Stop,
                    });
                }
            }
        }
    }
}

/// One streamed chunk of either endpoint.
#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// Splits a byte stream into the data of server-sent events.
#[derive(Debug, Default)]
struct SseParser {
    line: Vec<u8>,
    data: String,
}

impl SseParser {
    /// Feeds bytes; returns the data of each event they complete.
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                if self.line.len() + self.data.len() > MAX_EVENT_BYTES {
                    return Err(Error::BadServerResponse(format!(
                        "server-sent event longer than {MAX_EVENT_BYTES} bytes"
                    )));
                }
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(std::mem::take(&mut self.data));
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
            // Comments (":") and the other fields (event, id, retry) are not used.
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_joins_split_events() {
        let mut p = SseParser::default();
        assert!(p.push(b": hello\n\ndata: {\"a\"").unwrap().is_empty());
        assert_eq!(
            p.push(b":1}\r\n\r\ndata: x\ndata:y\n").unwrap(),
            ["{\"a\":1}"]
        );
        assert_eq!(p.push(b"\ndata: [DONE]\n\n").unwrap(), ["x\ny", "[DONE]"]);
        let mut p = SseParser::default();
        assert!(p.push(&vec![b'a'; MAX_EVENT_BYTES + 1]).is_err());
    }
}
