//! The frames `/fabstir/session/1.0.0` adds to the token stream's: a prompt on an open
//! session (plain text or a conversation the host renders with the model's chat template),
//! where the session resumes, and how a prompt ended. Each prompt is one stream: an idle
//! session holds no stream slot, and a broken stream loses at most one window.

use ethers_core::types::H256;
use ethers_core::utils::keccak256;
use serde::{Deserialize, Serialize};

use crate::receipt::SignedReceipt;

/// Protocol name of prompts on an open session.
pub const SESSION_PROTOCOL: &str = "/fabstir/session/1.0.0";

/// Who said a message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChatRole {
    /// Instructions for the model.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl ChatRole {
    /// The role's name in templates: `system`, `user`, `assistant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The byte the role is hashed as (its wire index).
    fn tag(self) -> u8 {
        match self {
            Self::System => 0,
            Self::User => 1,
            Self::Assistant => 2,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: ChatRole,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role`.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What a session prompt asks the model to continue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptInput {
    /// Text continued as it is (no template).
    Text(String),
    /// A conversation: the host renders it with the model's chat template and generates the
    /// assistant's next message.
    Chat(Vec<ChatMessage>),
}

/// The domain tag of a conversation's hash.
const CHAT_TAG: &[u8] = b"fabstir chat v1";

impl PromptInput {
    /// The hash the transcript takes for this prompt: `keccak256(text)` for text (as a job's
    /// prompt hash), and for a conversation `keccak256("fabstir chat v1" || for each message:
    /// uint8(role) || uint32be(len(content)) || content)`, roles 0 system, 1 user, 2 assistant.
    pub fn hash(&self) -> H256 {
        match self {
            Self::Text(text) => H256(keccak256(text.as_bytes())),
            Self::Chat(messages) => {
                let len = messages.iter().map(|m| 5 + m.content.len()).sum::<usize>();
                let mut encoded = Vec::with_capacity(CHAT_TAG.len() + len);
                encoded.extend_from_slice(CHAT_TAG);
                for message in messages {
                    encoded.push(message.role.tag());
                    let len = u32::try_from(message.content.len()).unwrap_or(u32::MAX);
                    encoded.extend_from_slice(&len.to_be_bytes());
                    encoded.extend_from_slice(message.content.as_bytes());
                }
                H256(keccak256(encoded))
            }
        }
    }

    /// Whether there is nothing to continue: empty text or no message.
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text(text) => text.is_empty(),
            Self::Chat(messages) => messages.is_empty(),
        }
    }
}

/// The plain chat template of models without one of their own: each message on its own line
/// as `role: content`, then `assistant:` for the model to continue.
pub fn plain_chat_template(messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for message in messages {
        text.push_str(message.role.as_str());
        text.push_str(": ");
        text.push_str(&message.content);
        text.push('\n');
    }
    text.push_str("assistant:");
    text
}

/// A prompt on an open session, sent once the host said where the session resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPrompt {
    /// What to continue.
    pub input: PromptInput,
    /// The most tokens to generate for this prompt (the host may generate fewer).
    pub max_tokens: u32,
    /// Temperature x 1000 (0 is greedy).
    pub temperature_milli: u32,
    /// Top-p x 1000 (1000 disables top-p).
    pub top_p_milli: u32,
    /// Sampling seed.
    pub seed: u64,
}

/// The host accepted the client on a session: where its transcript resumes, and how much the
/// deposit still pays for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionReady {
    /// The newest receipt the host holds for the session, as the client signed it (`None`
    /// before the first): both sides continue the transcript from it. The client checks its
    /// own signature; tokens it received beyond it were never paid and are not counted again.
    pub resume: Option<SignedReceipt>,
    /// Counted tokens the deposit pays for beyond the resume point.
    pub available_tokens: u64,
}

/// Why a session prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The prompt's `max_tokens` (or the host's limit) was reached.
    Length,
    /// The deposit pays for no more tokens: top the session up to go on.
    Deposit,
}

/// The end of a prompt's tokens. The client answers with its receipt for everything counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptDone {
    /// Tokens delivered for this prompt, with or without text.
    pub tokens: u64,
    /// Why it ended.
    pub finish: FinishReason,
}

/// The host's answer to the client's request to end the session: it closes it on chain with
/// the newest receipt it holds, which pays for `tokens` over the whole session; the rest of
/// the deposit goes back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnding {
    /// Counted tokens the close pays for (0 if the client signed no receipt).
    pub tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_hashes_every_role_and_boundary() {
        let chat = |m: &[(ChatRole, &str)]| {
            PromptInput::Chat(m.iter().map(|&(r, c)| ChatMessage::new(r, c)).collect())
        };
        let a = chat(&[(ChatRole::User, "ab"), (ChatRole::Assistant, "c")]);
        let moved = chat(&[(ChatRole::User, "a"), (ChatRole::Assistant, "bc")]);
        let recast = chat(&[(ChatRole::System, "ab"), (ChatRole::Assistant, "c")]);
        assert_ne!(a.hash(), moved.hash());
        assert_ne!(a.hash(), recast.hash());
        assert_eq!(
            PromptInput::Text("Once upon a time".into()).hash(),
            crate::job::prompt_hash("Once upon a time")
        );
        assert!(PromptInput::Chat(Vec::new()).is_empty());
    }

    #[test]
    fn the_plain_template_names_each_role() {
        let text = plain_chat_template(&[
            ChatMessage::new(ChatRole::System, "Be brief."),
            ChatMessage::new(ChatRole::User, "Hi"),
        ]);
        assert_eq!(text, "system: Be brief.\nuser: Hi\nassistant:");
    }
}
