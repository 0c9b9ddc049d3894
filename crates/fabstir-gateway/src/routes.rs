//! The HTTP side: OpenAI's endpoints on axum, answers as JSON or server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fabstir_core::{ModelId, ProviderQuery};
use futures::{Stream, StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::{ChatCompletionRequest, CompletionRequest, Params, Prompt, chat_prompt};
use crate::job::{Ask, Finished, Output};
use crate::{ApiError, Gateway};

/// The gateway's routes.
pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .fallback(not_found)
        .with_state(gateway)
}

/// The two completion endpoints, which differ only in their JSON shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completions => "completions",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completions => "cmpl",
        }
    }

    /// One choice of a streamed chunk: `text` (first: with the assistant's role) or the end.
    fn delta(self, text: Option<&str>, first: bool, finish: Option<&str>) -> Value {
        match self {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if first {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(text) = text {
                    delta.insert("content".into(), text.into());
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completions => json!({
                "index": 0,
                "text": text.unwrap_or_default(),
                "logprobs": null,
                "finish_reason": finish,
            }),
        }
    }

    /// The one choice of a whole answer.
    fn choice(self, finished: &Finished) -> Value {
        match self {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": finished.text, "refusal": null},
                "logprobs": null,
                "finish_reason": finished.finish_reason,
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": finished.text,
                "logprobs": null,
                "finish_reason": finished.finish_reason,
            }),
        }
    }

    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }
}

/// What every response and chunk of one request shares.
#[derive(Debug, Clone)]
struct Envelope {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl Envelope {
    fn new(endpoint: Endpoint, model: &str, include_usage: bool) -> Self {
        Self {
            endpoint,
            id: format!(
                "{}-{:024x}",
                endpoint.id_prefix(),
                rand::random::<u128>() >> 32
            ),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
            model: model.to_owned(),
            include_usage,
        }
    }

    fn chunk(&self, choices: Vec<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": self.endpoint.object(true),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn whole(&self, finished: &Finished) -> Value {
        json!({
            "id": self.id,
            "object": self.endpoint.object(false),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": [self.endpoint.choice(finished)],
            "usage": finished.usage,
            "fabstir": finished.settlement,
        })
    }

    /// The events that end a stream: the finish chunk (with the `fabstir` extension), the
    /// usage chunk when asked for, and `[DONE]`.
    fn ending(&self, finished: &Finished) -> Vec<Event> {
        let mut last = self.chunk(vec![self.endpoint.delta(
            None,
            false,
            Some(finished.finish_reason),
        )]);
        last["fabstir"] = json!(finished.settlement);
        let mut events = vec![data(&last)];
        if self.include_usage {
            let mut usage = self.chunk(Vec::new());
            usage["usage"] = json!(finished.usage);
            events.push(data(&usage));
        }
        events.push(Event::default().data("[DONE]"));
        events
    }
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

async fn chat(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Response {
    serve(gateway, headers, Endpoint::Chat, body, |request| {
        let prompt = chat_prompt(&request.messages)
            .map_err(|m| ApiError::bad_request(Some("messages"), m))?;
        Ok((request.model, prompt, request.params))
    })
    .await
}

async fn completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    serve(gateway, headers, Endpoint::Completions, body, |request| {
        let prompt = match request.prompt {
            Prompt::One(prompt) => prompt,
            Prompt::Many(mut prompts) if prompts.len() == 1 => prompts.remove(0),
            Prompt::Many(_) => {
                return Err(ApiError::bad_request(
                    Some("prompt"),
                    "only one prompt per request is served",
                ));
            }
        };
        Ok((request.model, prompt, request.params))
    })
    .await
}

/// Serves a completion request of either endpoint: authorizes it, reads its body, takes its
/// model, prompt and parameters with `parts`, runs it and counts the answer.
async fn serve<R>(
    gateway: Arc<Gateway>,
    headers: HeaderMap,
    endpoint: Endpoint,
    body: Result<Json<R>, JsonRejection>,
    parts: impl FnOnce(R) -> Result<(String, String, Params), ApiError>,
) -> Response {
    let started = Instant::now();
    let answer = async {
        gateway.authorize(&headers)?;
        let Json(request) = body.map_err(rejected)?;
        let (model, prompt, params) = parts(request)?;
        let ask = Ask {
            endpoint: endpoint.name(),
            model,
            prompt,
            params,
            started,
        };
        complete(&gateway, endpoint, ask).await
    };
    answered(&gateway, endpoint.name(), answer.await)
}

/// Counts the answer (and logs a refusal, which the job's log line does not cover).
fn answered(
    gateway: &Gateway,
    endpoint: &'static str,
    answer: Result<Response, ApiError>,
) -> Response {
    let response = answer.unwrap_or_else(|e| {
        tracing::info!(endpoint, status = e.status.as_u16(), code = e.code, message = %e.message, "request refused");
        e.into_response()
    });
    gateway
        .metrics
        .request(endpoint, response.status().as_u16());
    response
}

fn rejected(rejection: JsonRejection) -> ApiError {
    ApiError::bad_request(None, rejection.body_text())
}

/// Runs the job and answers with the whole completion, or with server-sent events. A job that
/// fails before its first token is answered with an HTTP error; after it, with an error event.
async fn complete(
    gateway: &Arc<Gateway>,
    endpoint: Endpoint,
    ask: Ask,
) -> Result<Response, ApiError> {
    let streamed = ask.params.stream;
    let include_usage = ask
        .params
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let envelope = Envelope::new(endpoint, &ask.model, streamed && include_usage);
    let mut output = gateway.start(ask).await?;
    if !streamed {
        loop {
            match output.recv().await {
                Some(Output::Text(_)) => {}
                Some(Output::Done(done)) => {
                    let finished = done?;
                    let mut response = Json(envelope.whole(&finished)).into_response();
                    settlement_headers(response.headers_mut(), &finished);
                    return Ok(response);
                }
                None => return Err(ApiError::upstream("the job ended without a result")),
            }
        }
    }
    let first = match output.recv().await {
        Some(Output::Done(Err(e))) => return Err(e),
        Some(first) => first,
        None => return Err(ApiError::upstream("the job ended without a result")),
    };
    let head = envelope.chunk(vec![endpoint.delta(Some(""), true, None)]);
    let opening = stream::iter(vec![data(&head)]);
    let events = opening.chain(events(envelope, first, output));
    let sse = Sse::new(events.map(Ok::<_, Infallible>)).keep_alive(KeepAlive::default());
    Ok(sse.into_response())
}

/// The events of a stream, from its first output to `[DONE]` (or an error event).
fn events(
    envelope: Envelope,
    first: Output,
    rx: mpsc::Receiver<Output>,
) -> impl Stream<Item = Event> {
    let state = (Some(first), Some(rx));
    stream::unfold(state, move |(pending, rx)| {
        let envelope = envelope.clone();
        async move {
            let mut rx = rx?;
            let next = match pending {
                Some(output) => Some(output),
                None => rx.recv().await,
            };
            let events = match next? {
                Output::Text(text) => {
                    let chunk =
                        envelope.chunk(vec![envelope.endpoint.delta(Some(&text), false, None)]);
                    return Some((vec![data(&chunk)], (None, Some(rx))));
                }
                Output::Done(Ok(finished)) if finished.restarted => {
                    // The caller holds text of a host that failed: an error, not [DONE], with
                    // the paid job's settlement and its whole text.
                    let mut body = ApiError::restarted(
                        "a host failed mid-stream and another completed the job; the text \
                         streamed so far is not its result, which is in fabstir.text",
                    )
                    .body();
                    body["fabstir"] = json!(finished.settlement);
                    body["fabstir"]["text"] = json!(finished.text);
                    vec![data(&body)]
                }
                Output::Done(Ok(finished)) => envelope.ending(&finished),
                Output::Done(Err(e)) => vec![data(&e.body())],
            };
            Some((events, (None, None)))
        }
    })
    .flat_map(stream::iter)
}

fn settlement_headers(headers: &mut HeaderMap, finished: &Finished) {
    let s = &finished.settlement;
    let pairs = [
        ("x-fabstir-job", s.job.to_string()),
        ("x-fabstir-host", s.host.clone()),
        ("x-fabstir-paid", format!("{} {}", s.paid, s.token)),
        ("x-fabstir-result-cid", s.result_cid.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// `GET /v1/models`: the configured models that hosts serve now, with their hosts and prices.
async fn models(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let answer = async {
        gateway.authorize(&headers)?;
        let token = &gateway.token;
        let mut data = Vec::new();
        for name in &gateway.config.models {
            let query = ProviderQuery::new(ModelId::from_name(name), token.address());
            let hosts = gateway.sdk.discover(&query).await.map_err(|e| {
                tracing::warn!(error = %e, "discovery");
                ApiError::upstream("discovery failed")
            })?;
            if hosts.is_empty() {
                continue;
            }
            let hosts: Vec<Value> = hosts
                .iter()
                .map(|h| {
                    let caps = &h.capabilities;
                    json!({
                        "peer_id": caps.peer_id.to_string(),
                        "address": format!("{:#x}", caps.eth_address),
                        "price_per_token": caps.price_for(token.address()).map(|p| p.format(token.decimals)),
                        "token": token.symbol,
                        "max_tokens": caps.max_tokens,
                    })
                })
                .collect();
            data.push(json!({
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "fabstir",
                "fabstir": {"hosts": hosts},
            }));
        }
        Ok::<_, ApiError>(Json(json!({"object": "list", "data": data})).into_response())
    };
    answered(&gateway, "models", answer.await)
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let mut response = gateway.metrics.render().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: "unknown_url",
        param: None,
        message: format!(
            "unknown endpoint {} {}",
            request.method(),
            request.uri().path()
        ),
    }
}

impl Gateway {
    /// Checks the bearer token when one is configured (compared in constant time).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.config.api_key else {
            return Ok(());
        };
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let same = given.len() == key.len()
            && given
                .bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}
