//! After a run, on chain: the result is submitted to be paid, or the job is released so its
//! client is refunded at once.

use std::sync::Arc;

use fabstir_core::JobId;

use super::Host;

impl Host {
    /// Submits a result on chain, in the background.
    pub(super) fn settle(self: &Arc<Self>, id: JobId, cid: String, tokens_used: u64) {
        if self.is_stopping() {
            tracing::warn!(job = %id, "stopping: not settling an interrupted job");
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            match host
                .contracts
                .submit_result(id, cid.as_bytes(), tokens_used, &host.sender)
                .await
            {
                Ok(settlement) => {
                    host.metrics.jobs_completed.inc();
                    tracing::info!(job = %id, %cid, tokens_used, paid = %settlement.paid.base_units(), "result submitted");
                }
                Err(e) => {
                    host.metrics.errors.inc();
                    tracing::error!(job = %id, error = %e, "submitting the result failed");
                }
            }
        });
    }

    /// Gives a claimed job back so its client is refunded at once (after a failed inference).
    pub(super) async fn release(&self, id: JobId) {
        match self.contracts.release_job(id, &self.sender).await {
            Ok(_) => {
                self.metrics.jobs_released.inc();
                tracing::warn!(job = %id, "released job; client refunded");
            }
            Err(e) => {
                self.metrics.errors.inc();
                tracing::error!(job = %id, error = %e, "could not release job");
            }
        }
    }
}
