//! After a stream, on chain: the result is submitted with the client's receipt to be paid, or
//! the job is released so its client is refunded at once.

use std::sync::Arc;

use fabstir_core::JobId;
use fabstir_core::receipt::SignedReceipt;

use super::Host;

impl Host {
    /// Settles `id` once its stream ended, with the newest receipt the client signed (checked
    /// by the network layer), in the background: the result is submitted and the host paid
    /// for the receipt's tokens. With no receipt (the client signed nothing) or no result, the
    /// job is given back and the client refunded. Once per job.
    pub(super) async fn settle(self: &Arc<Self>, id: JobId, receipt: Option<SignedReceipt>) {
        let Some(cid) = self.finish(id).await else {
            return;
        };
        if self.is_stopping() {
            tracing::warn!(job = %id, "stopping: not settling an interrupted job");
            return;
        }
        let host = self.clone();
        tokio::spawn(async move {
            let (Some(cid), Some(receipt)) = (cid, receipt) else {
                host.release_now(id).await;
                return;
            };
            match host
                .contracts
                .submit_result(id, cid.to_string().as_bytes(), &receipt, &host.sender)
                .await
            {
                Ok(settlement) => {
                    host.metrics.jobs_completed.inc();
                    tracing::info!(job = %id, %cid, tokens = receipt.tokens, paid = %settlement.paid.base_units(), "result submitted");
                }
                Err(e) => {
                    host.metrics.errors.inc();
                    tracing::error!(job = %id, error = %e, "submitting the result failed");
                }
            }
        });
    }

    /// Gives a claimed job back so its client is refunded at once (after a failed inference),
    /// unless it was finished already.
    pub(super) async fn release(&self, id: JobId) {
        if self.finish(id).await.is_some() {
            self.release_now(id).await;
        }
    }

    async fn release_now(&self, id: JobId) {
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
