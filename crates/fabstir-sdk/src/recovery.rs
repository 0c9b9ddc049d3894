//! Getting a failed job's escrow back: cancel while it is posted; once claimed, ask to close
//! (the host has the close window to settle with what it delivered) and expire when the window
//! ends. Failovers run this in the background; [`FabstirSdk::recover_funds`] runs it for a job
//! found after a restart. A session whose host failed is recovered the same way
//! ([`recover_session`]).
//!
//! [`FabstirSdk::recover_funds`]: crate::FabstirSdk::recover_funds

use std::time::Duration;

use fabstir_core::auth::SigningKey;
use fabstir_core::clock::unix_now;
use fabstir_core::{JobId, JobState, JobStatus, SessionId, SessionStatus};

use crate::SdkEvent;
use crate::sdk::Inner;

/// Returns when the job no longer holds funds (refunded, or settled by someone else).
pub(crate) async fn recover_escrow(inner: &Inner, job: JobId, key: &SigningKey) {
    loop {
        let on_chain = match inner.chain.job(job).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(%job, error = %e, "recovery: reading the job");
                tokio::time::sleep(inner.config.poll_interval).await;
                continue;
            }
        };
        let attempt = match on_chain.status {
            JobStatus::Posted => inner.chain.cancel_job(job, key).await,
            JobStatus::Claimed => match inner.chain.request_close(job, key).await {
                // Closing now: the next turn waits for the end of the close window.
                Ok(()) => continue,
                Err(e) => Err(e),
            },
            JobStatus::Closing => {
                // While closing, the deadline is the end of the host's last chance to settle.
                // The latest block may be old on a quiet chain; the next block is mined at
                // least at the wall clock's time.
                let now = inner.chain.now().await.unwrap_or_default().max(unix_now());
                if now > on_chain.details.deadline {
                    inner.chain.expire_job(job, key).await
                } else {
                    let wait = Duration::from_secs(on_chain.details.deadline - now)
                        .min(Duration::from_secs(1));
                    tokio::time::sleep(wait.max(inner.config.poll_interval)).await;
                    continue;
                }
            }
            _ => break,
        };
        match attempt {
            Ok(()) => {
                let _ = inner.events.send(SdkEvent::Refunded {
                    job,
                    amount: on_chain.amount,
                });
                inner.track(job, JobState::Failed);
                tracing::info!(%job, "escrow recovered");
                break;
            }
            Err(e) => {
                tracing::debug!(%job, error = %e, "recovery attempt");
                tokio::time::sleep(inner.config.poll_interval).await;
            }
        }
    }
}

/// Returns when the session no longer holds funds: asks to close an open one (its host has
/// the close window to settle what was receipted), then expires it when the window ends.
pub(crate) async fn recover_session(inner: &Inner, session: SessionId, key: &SigningKey) {
    loop {
        let on_chain = match inner.chain.session(session).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%session, error = %e, "recovery: reading the session");
                tokio::time::sleep(inner.config.poll_interval).await;
                continue;
            }
        };
        let rules = match inner.chain.rules().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(%session, error = %e, "recovery: reading the rules");
                tokio::time::sleep(inner.config.poll_interval).await;
                continue;
            }
        };
        let attempt = match on_chain.status {
            SessionStatus::Open => inner.chain.request_session_close(session, key).await,
            SessionStatus::Closing => {
                let now = inner.chain.now().await.unwrap_or_default().max(unix_now());
                let settle_by = on_chain.settle_by(&rules);
                if now > settle_by {
                    inner.chain.expire_session(session, key).await
                } else {
                    let wait = Duration::from_secs(settle_by - now).min(Duration::from_secs(1));
                    tokio::time::sleep(wait.max(inner.config.poll_interval)).await;
                    continue;
                }
            }
            _ => break,
        };
        if let Err(e) = attempt {
            tracing::debug!(%session, error = %e, "session recovery attempt");
            tokio::time::sleep(inner.config.poll_interval).await;
        }
    }
    tracing::info!(%session, "session deposit recovered");
}
