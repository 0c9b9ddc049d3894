//! OpenAI's request and response bodies, as far as the gateway reads and writes them.
//!
//! Requests accept (and ignore) fields the marketplace has no use for (`user`, `logprobs`
//! off, ...), as OpenAI-compatible servers do; fields that would change the answer and cannot
//! be honoured (`n` above 1) are refused with a 400.

use fabstir_core::cid::Cid;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model's name: it routes the request.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Shared sampling and streaming parameters.
    #[serde(flatten)]
    pub params: Params,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model's name: it routes the request.
    pub model: String,
    /// The prompt: a string, or an array holding one string.
    pub prompt: Prompt,
    /// Shared sampling and streaming parameters.
    #[serde(flatten)]
    pub params: Params,
}

/// The parameters both endpoints share.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Params {
    /// Most tokens to generate (and pay for).
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2 (OpenAI's default is 1).
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    pub top_p: Option<f64>,
    /// Sampling seed; a random one when absent.
    pub seed: Option<u64>,
    /// Whether to answer with server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1 is served.
    pub n: Option<u32>,
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage (and no choices) before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// One message of a chat.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text: a string, or an array of parts of which the `text` ones are read.
    #[serde(default)]
    pub content: Option<Value>,
}

/// A completion prompt.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    One(String),
    /// Several prompts (only one is served).
    Many(Vec<String>),
}

impl ChatMessage {
    /// The message's text: a string content, or its text parts joined.
    pub fn text(&self) -> Result<String, String> {
        match &self.content {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for part in parts {
                    match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        (kind, _) => {
                            return Err(format!(
                                "content parts of type {} are not supported",
                                kind.unwrap_or("(none)")
                            ));
                        }
                    }
                }
                Ok(text)
            }
            Some(_) => Err("content must be a string or an array of parts".to_owned()),
        }
    }
}

/// Renders a chat as the prompt the host completes: one `role: text` line per message, then
/// `assistant:` for the answer. (The models served today have no chat template of their own.)
pub fn chat_prompt(messages: &[ChatMessage]) -> Result<String, String> {
    if messages.is_empty() {
        return Err("messages must not be empty".to_owned());
    }
    let mut prompt = String::new();
    for message in messages {
        let role = match message.role.as_str() {
            r @ ("system" | "developer" | "user" | "assistant" | "tool") => r,
            other => return Err(format!("unknown role `{other}`")),
        };
        prompt.push_str(role);
        prompt.push_str(": ");
        prompt.push_str(message.text()?.trim());
        prompt.push('\n');
    }
    prompt.push_str("assistant:");
    Ok(prompt)
}

/// Token counts of a response. The marketplace bills generated tokens only, so the prompt is
/// not metered: `prompt_tokens` is 0 and `completion_tokens` is the count the client signed
/// receipts for, which the chain paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt (not metered: 0).
    pub prompt_tokens: u64,
    /// Tokens generated, receipted and paid.
    pub completion_tokens: u64,
    /// The sum.
    pub total_tokens: u64,
}

impl Usage {
    /// The usage of `completion` generated tokens.
    pub fn completion(completion: u64) -> Self {
        Self {
            prompt_tokens: 0,
            completion_tokens: completion,
            total_tokens: completion,
        }
    }
}

/// The `fabstir` extension of a response: where it ran and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The on-chain job.
    pub job: u64,
    /// The host's peer id.
    pub host: String,
    /// The host's address (paid).
    pub host_address: String,
    /// The result's CID (covers exactly the generated text), in its text form.
    #[serde(with = "fabstir_core::cid::text")]
    pub result_cid: Cid,
    /// The payment token's symbol.
    pub token: String,
    /// Paid to the host, in the token's units.
    pub paid: String,
    /// Paid to the host, in base units.
    pub paid_base_units: String,
    /// The protocol fee, in the token's units.
    pub fee: String,
    /// Refunded from the escrow, in the token's units.
    pub refund: String,
    /// Tokens the gateway signed receipts for (what the chain paid).
    pub tokens_receipted: u64,
    /// Hosts tried.
    pub attempts: u32,
}
