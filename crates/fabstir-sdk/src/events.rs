//! Events the SDK emits while it works, for applications to observe.

use fabstir_core::primitives::Address;
use fabstir_core::{JobId, JobState, ModelId, NodePeerId, SessionId, TokenAmount};
use serde::{Deserialize, Serialize};

/// Something that happened in the SDK. Jobs are named by their on-chain id once posted; before
/// that (while negotiating) by the SDK's local request number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SdkEvent {
    /// A job moved from one state to another.
    JobStateChanged {
        /// The job's request number in this SDK instance.
        request: u64,
        /// The on-chain id, once posted.
        job: Option<JobId>,
        /// The previous state.
        from: JobState,
        /// The new state.
        to: JobState,
    },
    /// Tokens arrived on a job's stream.
    TokenReceived {
        /// The job.
        job: JobId,
        /// Index of the first token in this batch.
        index: u64,
        /// The decoded text of the batch.
        text: String,
    },
    /// Discovery found (and verified) a host.
    NodeDiscovered {
        /// The host's peer id.
        peer_id: NodePeerId,
        /// The host's Ethereum address.
        address: Address,
        /// The model it was found for.
        model: ModelId,
    },
    /// An attempt failed after tokens arrived: its text is not part of the result (the next
    /// host's text is).
    TokensDiscarded {
        /// The failed attempt's job.
        job: JobId,
        /// The host that streamed them.
        host: NodePeerId,
        /// Tokens received from it and discarded.
        tokens: u64,
    },
    /// A job failed on one host and is being retried on another.
    Failover {
        /// The job's request number in this SDK instance.
        request: u64,
        /// The job that failed (its escrow is being recovered).
        failed_job: Option<JobId>,
        /// The host that failed.
        host: NodePeerId,
        /// The attempt about to start (2 for the first retry).
        attempt: u32,
        /// Why the host was given up on.
        reason: String,
    },
    /// The escrow of a completed job was settled.
    PaymentReleased {
        /// The job.
        job: JobId,
        /// The payment token (zero address for ETH).
        token: Address,
        /// Paid to the host.
        paid_to_host: TokenAmount,
        /// Protocol fee to the treasury.
        fee: TokenAmount,
        /// Returned to the client.
        refund: TokenAmount,
    },
    /// Escrow was returned to the client without a result (cancel or expiry).
    Refunded {
        /// The job.
        job: JobId,
        /// The amount returned.
        amount: TokenAmount,
    },
    /// Text arrived for a session's prompt.
    SessionTokens {
        /// The session.
        session: SessionId,
        /// The prompt's number on its [`Session`](crate::Session) handle (from 1).
        prompt: u64,
        /// The text.
        text: String,
    },
    /// A session's prompt ended.
    SessionPromptDone {
        /// The session.
        session: SessionId,
        /// The prompt's number on its handle.
        prompt: u64,
        /// Counted tokens of the prompt (what it cost).
        tokens: u64,
        /// What the handle has spent so far, in base units.
        spent: TokenAmount,
    },
    /// A session's host failed; a new session with another host takes the conversation over.
    SessionFailover {
        /// The failed session (its unsettled deposit is being recovered).
        failed_session: SessionId,
        /// The host that failed.
        host: NodePeerId,
        /// Why.
        reason: String,
    },
    /// An error the application should know about.
    Error {
        /// The job concerned, if any.
        job: Option<JobId>,
        /// What went wrong.
        message: String,
    },
}

impl SdkEvent {
    /// The on-chain job this event concerns, if any.
    pub fn job(&self) -> Option<JobId> {
        match self {
            SdkEvent::JobStateChanged { job, .. } | SdkEvent::Error { job, .. } => *job,
            SdkEvent::Failover { failed_job, .. } => *failed_job,
            SdkEvent::TokenReceived { job, .. }
            | SdkEvent::PaymentReleased { job, .. }
            | SdkEvent::Refunded { job, .. }
            | SdkEvent::TokensDiscarded { job, .. } => Some(*job),
            SdkEvent::NodeDiscovered { .. }
            | SdkEvent::SessionTokens { .. }
            | SdkEvent::SessionPromptDone { .. }
            | SdkEvent::SessionFailover { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_of_event() {
        let e = SdkEvent::TokenReceived {
            job: JobId(3),
            index: 0,
            text: "hi".into(),
        };
        assert_eq!(e.job(), Some(JobId(3)));
        let e = SdkEvent::JobStateChanged {
            request: 1,
            job: None,
            from: JobState::Negotiating,
            to: JobState::Failed,
        };
        assert_eq!(e.job(), None);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<SdkEvent>(&json).unwrap(), e);
    }
}
