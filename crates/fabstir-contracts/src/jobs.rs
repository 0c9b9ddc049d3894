//! Job writes: post (ETH, ERC-20, permit), claim, submit, cancel, expire, release.

use std::sync::Arc;

use ethers::contract::parse_log;
use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, Bytes, H256, Signature, TransactionReceipt, U256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::{JobDetails, JobId, JobRequirements, TokenAmount};

use crate::bindings::job_marketplace::{
    JobClaimedFilter, JobCompletedFilter, JobMarketplace, JobPostedFilter, Receipt,
};
use crate::convert;
use crate::error::{Error, Result};
use crate::manager::{HeadlessContractManager, send, tx_info};
use crate::types::{PostedJob, Settlement, TxInfo};

/// Marketplace transactions that take a job id and its terms (which the manager reads and
/// passes back), sent by the signer; each returns what the mined transaction cost.
macro_rules! job_transactions {
    ($($(#[$doc:meta])* $name:ident;)*) => {
        $(
            $(#[$doc])*
            pub async fn $name<S: Middleware + 'static>(
                &self,
                job: JobId,
                signer: &Arc<S>,
            ) -> Result<TxInfo> {
                let view = self.open_job(job).await?;
                let call = self.marketplace(signer).$name(job.to_u256(), view.terms);
                match send(call).await {
                    Ok(receipt) => Ok(tx_info(&receipt)),
                    Err(e) => Err(self.name_claimer(e).await),
                }
            }
        )*
    };
}

impl HeadlessContractManager {
    pub(crate) fn marketplace<S: Middleware + 'static>(
        &self,
        signer: &Arc<S>,
    ) -> JobMarketplace<S> {
        JobMarketplace::new(self.addresses().job_marketplace, signer.clone())
    }

    /// The address clients approve for ERC-20 payments: the marketplace, which holds the
    /// escrowed funds.
    pub fn payment_spender(&self) -> Address {
        self.addresses().job_marketplace
    }

    /// Posts a job paid in ETH: `value` wei are escrowed with the transaction.
    pub async fn post_job<S: Middleware + 'static>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        value: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<PostedJob> {
        let call = self
            .marketplace(signer)
            .post_job(
                convert::details_to_abi(details),
                convert::requirements_to_abi(requirements),
            )
            .value(value.base_units());
        posted(self, &send(call).await?).await
    }

    /// Posts a job paid with `amount` of the ERC-20 `token`. The signer must have approved
    /// the marketplace (`addresses().job_marketplace`, see [`Self::payment_spender`]) for at
    /// least `amount`; the marketplace pulls the funds.
    pub async fn post_job_with_token<S: Middleware + 'static>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        token: Address,
        amount: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<PostedJob> {
        let call = self.marketplace(signer).post_job_with_token(
            convert::details_to_abi(details),
            convert::requirements_to_abi(requirements),
            token,
            amount.base_units(),
        );
        posted(self, &send(call).await?).await
    }

    /// Posts a job paid with an EIP-2612 token in one transaction: the signer's wallet signs
    /// a permit for the marketplace (valid until `permit_deadline`, unix seconds) and the
    /// marketplace uses it and pulls the funds in the same transaction. No separate approval
    /// is sent.
    pub async fn post_job_with_permit<M: Middleware + 'static, W: Signer + 'static>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        token: Address,
        amount: TokenAmount,
        permit_deadline: u64,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<PostedJob> {
        let spender = self.payment_spender();
        let signature = self
            .sign_permit(token, spender, amount, permit_deadline, signer.signer())
            .await?;
        self.post_job_with_permit_signature(
            details,
            requirements,
            token,
            amount,
            permit_deadline,
            &signature,
            signer,
        )
        .await
    }

    /// Like [`Self::post_job_with_permit`] with a permit signed elsewhere (see
    /// [`Self::sign_permit`]); `signer` may be any signing middleware (a nonce manager, say).
    #[allow(clippy::too_many_arguments)]
    pub async fn post_job_with_permit_signature<S: Middleware + 'static>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        token: Address,
        amount: TokenAmount,
        permit_deadline: u64,
        signature: &Signature,
        signer: &Arc<S>,
    ) -> Result<PostedJob> {
        let (v, r, s) = convert::split_signature(signature)?;
        let call = self.marketplace(signer).post_job_with_permit(
            convert::details_to_abi(details),
            convert::requirements_to_abi(requirements),
            token,
            amount.base_units(),
            U256::from(permit_deadline),
            v,
            r,
            s,
        );
        posted(self, &send(call).await?).await
    }

    /// Claims a posted job for the signer (an active registered host serving its model).
    /// [`Error::JobAlreadyClaimed`] names the host that holds the claim.
    pub async fn claim_job<S: Middleware + 'static>(
        &self,
        job: JobId,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let view = self.open_job(job).await?;
        let call = self
            .marketplace(signer)
            .claim_job(job.to_u256(), view.terms.clone());
        match send(call).await {
            Ok(receipt) => {
                let claimed = find_log::<JobClaimedFilter>(self, &receipt)?;
                self.remember_claim(&view, claimed.host).await;
                Ok(tx_info(&receipt))
            }
            Err(e) => Err(self.name_claimer(e).await),
        }
    }

    /// The job, if it is still open: a finished job is [`Error::InvalidJobStatus`] without a
    /// transaction (the contract has forgotten it and would answer "not found").
    async fn open_job(&self, job: JobId) -> Result<crate::terms::JobView> {
        let view = self.job_view(job).await?;
        if view.status.is_open() {
            Ok(view)
        } else {
            Err(Error::InvalidJobStatus {
                job,
                status: view.status,
            })
        }
    }

    /// [`Error::JobAlreadyClaimed`] (also as the cause of a mined revert) with the claimer
    /// filled in from the chain: the contract's error names only the job.
    async fn name_claimer(&self, error: Error) -> Error {
        let claimer = async |job: JobId| {
            self.job(job)
                .await
                .ok()
                .and_then(|j| j.host)
                .unwrap_or_default()
        };
        match error {
            Error::JobAlreadyClaimed { job, .. } => Error::JobAlreadyClaimed {
                job,
                claimer: claimer(job).await,
            },
            Error::TxFailed {
                hash,
                block,
                gas_used,
                effective_gas_price,
                reason: Some(reason),
            } => {
                let reason = match *reason {
                    Error::JobAlreadyClaimed { job, .. } => Error::JobAlreadyClaimed {
                        job,
                        claimer: claimer(job).await,
                    },
                    other => other,
                };
                Error::TxFailed {
                    hash,
                    block,
                    gas_used,
                    effective_gas_price,
                    reason: Some(Box::new(reason)),
                }
            }
            other => other,
        }
    }

    job_transactions! {
        /// Cancels an unclaimed job; only its client. Refunds in full.
        cancel_job;
        /// Expires an unfinished job whose time is up (anyone may); refunds the client in full.
        expire_job;
        /// The claiming host gives a job up; the client is refunded in full at once.
        release_job;
        /// The client of a claimed job whose host is silent asks to close: the host may settle
        /// until the close window ends, then anyone may expire the job.
        request_close;
    }

    /// Settles a claimed job with its result and the client's newest receipt: the host is
    /// credited `receipt.tokens x price` less the fee fixed at posting (it withdraws its
    /// credit with [`Self::withdraw_credit`]), the rest goes back to the client. The contract checks the client's signature (ECDSA or ERC-1271).
    pub async fn submit_result<S: Middleware + 'static>(
        &self,
        job: JobId,
        result_cid: &[u8],
        receipt: &SignedReceipt,
        signer: &Arc<S>,
    ) -> Result<Settlement> {
        let view = self.open_job(job).await?;
        let call = self.marketplace(signer).submit_result(
            job.to_u256(),
            view.terms,
            Bytes::from(result_cid.to_vec()),
            Receipt {
                tokens: receipt.tokens,
                transcript: receipt.transcript.0,
            },
            Bytes::from(receipt.signature.clone()),
        );
        let receipt = send(call).await?;
        let completed = find_log::<JobCompletedFilter>(self, &receipt)?;
        Ok(Settlement {
            job: convert::job_id(completed.job_id)?,
            tokens_used: completed.tokens_used,
            transcript: H256(completed.transcript),
            paid: TokenAmount(completed.paid),
            fee: TokenAmount(completed.fee),
            refund: TokenAmount(completed.refund),
            tx: tx_info(&receipt),
        })
    }

    /// Owner only: adds or removes a payment token (the zero address is ETH).
    pub async fn set_token_accepted<S: Middleware + 'static>(
        &self,
        token: Address,
        accepted: bool,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let receipt = send(self.marketplace(signer).set_token_accepted(token, accepted)).await?;
        Ok(tx_info(&receipt))
    }

    /// Owner only: sets the protocol fee in basis points.
    pub async fn set_fee_bps<S: Middleware + 'static>(
        &self,
        fee_bps: u16,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let receipt = send(self.marketplace(signer).set_fee_bps(fee_bps)).await?;
        Ok(tx_info(&receipt))
    }

    /// Treasury only: sends the fees accrued in `token` to `to`.
    pub async fn withdraw_fees<S: Middleware + 'static>(
        &self,
        token: Address,
        to: Address,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let receipt = send(self.marketplace(signer).withdraw_fees(token, to)).await?;
        Ok(tx_info(&receipt))
    }

    /// Owner only: sets where protocol fees go.
    pub async fn set_treasury<S: Middleware + 'static>(
        &self,
        treasury: Address,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let receipt = send(self.marketplace(signer).set_treasury(treasury)).await?;
        Ok(tx_info(&receipt))
    }
}

/// The posted job, its terms cached from the JobPosted event.
async fn posted(
    manager: &HeadlessContractManager,
    receipt: &TransactionReceipt,
) -> Result<PostedJob> {
    let event = find_log::<JobPostedFilter>(manager, receipt)?;
    let job = convert::job_id(event.job_id)?;
    manager.terms_cache().insert(job.0, event.terms).await;
    Ok(PostedJob {
        job,
        tx: tx_info(receipt),
    })
}

/// The first event of type `E` emitted by the marketplace in `receipt`.
pub(crate) fn find_log<E: ethers::contract::EthEvent>(
    manager: &HeadlessContractManager,
    receipt: &TransactionReceipt,
) -> Result<E> {
    let marketplace = manager.addresses().job_marketplace;
    receipt
        .logs
        .iter()
        .filter(|log| log.address == marketplace)
        .find_map(|log| parse_log::<E>(log.clone()).ok())
        .ok_or_else(|| {
            Error::InvalidChainData(format!(
                "transaction {:#x} has no {} event",
                receipt.transaction_hash,
                E::name()
            ))
        })
}
