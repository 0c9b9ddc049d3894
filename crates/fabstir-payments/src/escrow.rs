//! What a payment escrows: a one-shot job's `maxTokens x price`, or a session's deposit. Both
//! go through the same routing ([`crate::PaymentManager::submit_job`],
//! [`crate::PaymentManager::open_session`]); this is the one place that says which
//! marketplace call each path makes for each.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::types::{Address, Signature};
use fabstir_contracts::{HeadlessContractManager, OpenedSession, PostedJob, Result, TxInfo};
use fabstir_core::{JobDetails, JobRequirements, SessionDetails, TokenAmount};

/// The three marketplace calls that pay for one kind of escrow.
pub(crate) trait Escrow {
    /// What the call opens.
    type Opened;

    /// The transaction that opened it.
    fn tx(opened: &Self::Opened) -> &TxInfo;

    /// Pays `amount` of ETH with the call.
    async fn with_eth<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<Self::Opened>;

    /// Pays `amount` of the ERC-20 `token` through the sender's allowance.
    async fn with_token<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<Self::Opened>;

    /// Pays `amount` of the EIP-2612 `token` with a permit signed for the marketplace.
    async fn with_permit<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        deadline: u64,
        signature: &Signature,
        sender: &Arc<S>,
    ) -> Result<Self::Opened>;
}

/// A one-shot job: `postJob`, `postJobWithToken`, `postJobWithPermit`.
pub(crate) struct Job<'a> {
    pub(crate) details: &'a JobDetails,
    pub(crate) requirements: &'a JobRequirements,
}

impl Escrow for Job<'_> {
    type Opened = PostedJob;

    fn tx(opened: &PostedJob) -> &TxInfo {
        &opened.tx
    }

    async fn with_eth<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<PostedJob> {
        contracts
            .post_job(self.details, self.requirements, amount, sender)
            .await
    }

    async fn with_token<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<PostedJob> {
        contracts
            .post_job_with_token(self.details, self.requirements, token, amount, sender)
            .await
    }

    async fn with_permit<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        deadline: u64,
        signature: &Signature,
        sender: &Arc<S>,
    ) -> Result<PostedJob> {
        contracts
            .post_job_with_permit_signature(
                self.details,
                self.requirements,
                token,
                amount,
                deadline,
                signature,
                sender,
            )
            .await
    }
}

/// A session's deposit: `openSession`, `openSessionWithToken`, `openSessionWithPermit`.
pub(crate) struct Session<'a>(pub(crate) &'a SessionDetails);

impl Escrow for Session<'_> {
    type Opened = OpenedSession;

    fn tx(opened: &OpenedSession) -> &TxInfo {
        &opened.tx
    }

    async fn with_eth<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<OpenedSession> {
        contracts.open_session(self.0, amount, sender).await
    }

    async fn with_token<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        sender: &Arc<S>,
    ) -> Result<OpenedSession> {
        contracts
            .open_session_with_token(self.0, token, amount, sender)
            .await
    }

    async fn with_permit<S: Middleware + 'static>(
        &self,
        contracts: &HeadlessContractManager,
        token: Address,
        amount: TokenAmount,
        deadline: u64,
        signature: &Signature,
        sender: &Arc<S>,
    ) -> Result<OpenedSession> {
        contracts
            .open_session_with_permit_signature(self.0, token, amount, deadline, signature, sender)
            .await
    }
}
