//! The job model: what a client asks for, what it requires of a host, and the lifecycle
//! state machine every layer reports against.

use std::fmt;

use ethers_core::types::{Address, H256};
use ethers_core::utils::keccak256;
use serde::{Deserialize, Serialize};

use crate::amount::TokenAmount;
use crate::ids::ModelId;
use crate::{Error, Result};

/// The terms of a job as they go on chain. The prompt itself never does: only its hash, so
/// that the host can check that the prompt it receives peer to peer is the one paid for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobDetails {
    /// The model to run.
    pub model: ModelId,
    /// `keccak256` of the prompt's UTF-8 bytes (see [`prompt_hash`]).
    pub prompt_hash: H256,
    /// The most tokens the client pays for.
    pub max_tokens: u32,
    /// Price per generated token, in base units of the payment token.
    pub price_per_token: TokenAmount,
    /// Unix time (seconds) after which an unfinished job can be expired and refunded.
    pub deadline: u64,
}

impl JobDetails {
    /// The escrow this job needs: `max_tokens x price_per_token`, or `None` on overflow.
    pub fn escrow_amount(&self) -> Option<TokenAmount> {
        self.price_per_token.checked_mul(self.max_tokens)
    }
}

/// What a job requires of the host that takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobRequirements {
    /// The only host allowed to claim the job; `None` lets any active host serving the model
    /// claim it.
    pub assigned_host: Option<Address>,
}

/// The hash of a prompt as it goes on chain: `keccak256(prompt)`.
pub fn prompt_hash(prompt: &str) -> H256 {
    H256(keccak256(prompt.as_bytes()))
}

/// Where a job is in its lifecycle, as the seed's state diagram has it.
///
/// ```text
/// Negotiating -> Posted -> Claimed -> Processing -> Streaming -> Completed -> PaymentReleased
///                                                \-> Completed (no stream)
/// any live state -> Failed
/// ```
///
/// The seed's diagram draws `Failed` from `Negotiating` and `Processing` only; the failure
/// handling it asks for (a host that never claims, a stream that breaks, a result whose CID
/// does not match) needs `Failed` from every live state, so every state before
/// `PaymentReleased` may fail. `PaymentReleased` and `Failed` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobState {
    /// Looking for a host and agreeing a price; nothing is on chain yet.
    Negotiating,
    /// Posted on chain with its escrow.
    Posted,
    /// A host has claimed it on chain.
    Claimed,
    /// The host is running inference.
    Processing,
    /// Tokens are streaming to the client.
    Streaming,
    /// The host submitted its result.
    Completed,
    /// The escrow was settled: host paid, fee taken, the rest refunded.
    PaymentReleased,
    /// The job failed; any escrow was or will be returned to the client.
    Failed,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        JobState::Negotiating,
        JobState::Posted,
        JobState::Claimed,
        JobState::Processing,
        JobState::Streaming,
        JobState::Completed,
        JobState::PaymentReleased,
        JobState::Failed,
    ];

    /// Whether the machine allows going from `self` to `next`.
    pub fn can_transition_to(self, next: JobState) -> bool {
        use JobState::*;
        matches!(
            (self, next),
            (Negotiating, Posted)
                | (Posted, Claimed)
                | (Claimed, Processing)
                | (Processing, Streaming)
                | (Processing, Completed)
                | (Streaming, Completed)
                | (Completed, PaymentReleased)
                | (
                    Negotiating | Posted | Claimed | Processing | Streaming | Completed,
                    Failed
                )
        )
    }

    /// Moves to `next`, or fails with [`Error::IllegalTransition`].
    pub fn transition(self, next: JobState) -> Result<JobState> {
        if self.can_transition_to(next) {
            Ok(next)
        } else {
            Err(Error::IllegalTransition {
                from: self,
                to: next,
            })
        }
    }

    /// Whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::PaymentReleased | JobState::Failed)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobState::*;
    use proptest::prelude::*;

    /// The complete table of legal transitions, written out independently of the code.
    const LEGAL: &[(JobState, JobState)] = &[
        (Negotiating, Posted),
        (Negotiating, Failed),
        (Posted, Claimed),
        (Posted, Failed),
        (Claimed, Processing),
        (Claimed, Failed),
        (Processing, Streaming),
        (Processing, Completed),
        (Processing, Failed),
        (Streaming, Completed),
        (Streaming, Failed),
        (Completed, PaymentReleased),
        (Completed, Failed),
    ];

    #[test]
    fn every_pair_is_legal_or_rejected() {
        let mut legal_seen = 0;
        for from in JobState::ALL {
            for to in JobState::ALL {
                let expected = LEGAL.contains(&(from, to));
                match from.transition(to) {
                    Ok(state) => {
                        assert!(expected, "{from} -> {to} must be rejected");
                        assert_eq!(state, to);
                        legal_seen += 1;
                    }
                    Err(Error::IllegalTransition { from: f, to: t }) => {
                        assert!(!expected, "{from} -> {to} must be allowed");
                        assert_eq!((f, t), (from, to));
                    }
                    Err(other) => panic!("unexpected error {other}"),
                }
            }
        }
        assert_eq!(legal_seen, LEGAL.len());
    }

    #[test]
    fn happy_paths_reach_payment_released() {
        let streamed = [
            Posted,
            Claimed,
            Processing,
            Streaming,
            Completed,
            PaymentReleased,
        ];
        let direct = [Posted, Claimed, Processing, Completed, PaymentReleased];
        for path in [&streamed[..], &direct[..]] {
            let end = path
                .iter()
                .try_fold(Negotiating, |state, next| state.transition(*next))
                .unwrap();
            assert_eq!(end, PaymentReleased);
            assert!(end.is_terminal());
        }
    }

    #[test]
    fn terminal_states_have_no_exit() {
        for from in [PaymentReleased, Failed] {
            assert!(from.is_terminal());
            assert!(JobState::ALL.iter().all(|to| from.transition(*to).is_err()));
        }
        assert_eq!(
            Failed.transition(Posted).unwrap_err().to_string(),
            "illegal job state transition from Failed to Posted"
        );
    }

    #[test]
    fn escrow_and_prompt_hash() {
        let details = JobDetails {
            model: ModelId::from_name("m"),
            prompt_hash: prompt_hash("Once upon a time"),
            max_tokens: 100,
            price_per_token: TokenAmount::from_base_units(1_000u64),
            deadline: 0,
        };
        assert_eq!(
            details.escrow_amount(),
            Some(TokenAmount::from_base_units(100_000u64))
        );
        assert_eq!(details.prompt_hash, H256(keccak256(b"Once upon a time")));
        let huge = JobDetails {
            price_per_token: TokenAmount(ethers_core::types::U256::MAX),
            ..details
        };
        assert_eq!(huge.escrow_amount(), None);
    }

    proptest! {
        /// Any walk that only takes allowed steps never leaves a terminal state and never
        /// reaches `PaymentReleased` without passing `Completed`.
        #[test]
        fn random_walks_respect_the_machine(steps in prop::collection::vec(0usize..8, 0..40)) {
            let mut state = Negotiating;
            let mut completed = false;
            for step in steps {
                let next = JobState::ALL[step];
                match state.transition(next) {
                    Ok(s) => {
                        prop_assert!(!state.is_terminal());
                        completed |= s == Completed;
                        if s == PaymentReleased { prop_assert!(completed); }
                        state = s;
                    }
                    Err(_) => prop_assert!(!LEGAL.contains(&(state, next))),
                }
            }
        }
    }
}
