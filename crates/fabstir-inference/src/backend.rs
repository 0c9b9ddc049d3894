//! The backend trait and the types of a generation request and its stream.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{Result, TokenStream};

/// A model a backend serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// The name the host advertises the model under.
    pub name: String,
    /// Number of entries in the model's vocabulary.
    pub vocab_size: usize,
    /// Longest sequence (prompt and completion) the model handles, in tokens.
    pub context_length: usize,
}

/// What to generate.
///
/// The defaults are llama2.c's: temperature 1.0, top-p 0.9.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The prompt text.
    pub prompt: String,
    /// The most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0.0 picks the most likely token every time (greedy).
    pub temperature: f32,
    /// Nucleus sampling: sample only from the smallest set of tokens whose probabilities add
    /// up to more than `top_p`. Values outside (0, 1) sample from the whole distribution.
    pub top_p: f32,
    /// Seed of the sampler's random generator; the same seed gives the same completion.
    pub seed: u64,
    /// Cancelling this token stops generation; so does dropping the stream.
    pub cancel: CancellationToken,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            max_tokens: 256,
            temperature: 1.0,
            top_p: 0.9,
            seed: 1,
            cancel: CancellationToken::new(),
        }
    }
}

impl GenerateRequest {
    /// Checks the sampling parameters.
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(crate::Error::InvalidRequest(format!(
                "temperature must be a finite number >= 0, got {}",
                self.temperature
            )));
        }
        if !self.top_p.is_finite() {
            return Err(crate::Error::InvalidRequest(format!(
                "top_p must be a finite number, got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedToken {
    /// The token's id in the model's vocabulary, or [`Self::UNKNOWN_ID`].
    pub id: u32,
    /// The text this token adds to the completion (may be empty, for instance for the first
    /// bytes of a multi-byte character, which arrive with the token that completes it).
    pub text: String,
}

impl GeneratedToken {
    /// The id of tokens from backends that do not know ids (OpenAI-compatible servers).
    pub const UNKNOWN_ID: u32 = u32::MAX;
}

/// Tokens used by one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the prompt as the model saw them (the leading BOS included).
    pub prompt_tokens: u32,
    /// Tokens generated and delivered.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt and completion tokens together.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The model ended the text (llama2.c: it emitted BOS or EOS).
    Stop,
    /// The model's context is full.
    ContextFull,
    /// The request was cancelled or the stream dropped.
    Cancelled,
}

/// Something that generates text from prompts: the embedded engine, a remote server.
#[async_trait]
pub trait InferenceBackend: Send + Sync {
    /// The model this backend serves.
    fn model(&self) -> &ModelInfo;

    /// Starts generating; tokens arrive on the returned stream as they are produced.
    ///
    /// Errors in the request (a prompt the model cannot encode, bad parameters) are returned
    /// here; errors during generation arrive on the stream.
    async fn generate(&self, request: GenerateRequest) -> Result<TokenStream>;
}
