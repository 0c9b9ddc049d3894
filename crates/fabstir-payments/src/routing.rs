//! Routing a payment into the marketplace's escrow, for a job or a session's deposit alike:
//! ETH sent with the call (`postJob{value}`), an ERC-20 whose allowance covers it through
//! `postJobWithToken`, an EIP-2612 token through `postJobWithPermit`, any other ERC-20
//! through an approval and then `postJobWithToken` (for sessions the `openSession*`
//! counterparts, see [`crate::escrow`]). Everything that can be known before a transaction is
//! sent is checked first.

use std::sync::Arc;

use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::Address;
use fabstir_contracts::{OpenedSession, PostedJob, TxInfo};
use fabstir_core::{
    JobDetails, JobRequirements, PaymentToken, SessionDetails, SessionId, TokenAmount,
};

use crate::escrow::{self, Escrow};
use crate::manager::PaymentManager;
use crate::{Error, Result};
use fabstir_core::clock::unix_now;

/// What a job pays (the core type, re-exported: the SDK's chain port speaks it too).
pub use fabstir_core::JobPayment;

/// Which path paid for a job or a session's deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentMethod {
    /// `postJob{value}`.
    Eth,
    /// `postJobWithToken`, with an approval first if `approval` is set.
    Token {
        /// The approval sent for this job, if one was needed.
        approval: bool,
    },
    /// `postJobWithPermit`: one transaction.
    Permit,
}

/// The outcome of [`PaymentManager::open_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSubmission {
    /// The opened session.
    pub opened: OpenedSession,
    /// How its deposit was paid.
    pub method: PaymentMethod,
    /// Every transaction sent for it, in order (approvals first, the open last).
    pub transactions: Vec<TxInfo>,
}

/// The outcome of [`PaymentManager::submit_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The posted job.
    pub posted: PostedJob,
    /// How it was paid.
    pub method: PaymentMethod,
    /// Every transaction sent for it, in order (approvals first, the post last).
    pub transactions: Vec<TxInfo>,
}

impl PaymentManager {
    /// Posts a job and pays for it, choosing the path by token:
    ///
    /// - ETH: balance check, then `postJob{value}` (one transaction);
    /// - ERC-20 whose allowance covers the job: `postJobWithToken` (one transaction);
    /// - ERC-20 with EIP-2612 permit (and `prefer_permit`): `postJobWithPermit` (one);
    /// - other ERC-20: approve, then `postJobWithToken` (two).
    ///
    /// Nothing is sent when the token is unknown or not accepted, or the balance is short.
    pub async fn submit_job<M, W>(
        &self,
        details: &JobDetails,
        requirements: &JobRequirements,
        payment: &JobPayment,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<Submission>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let job = escrow::Job {
            details,
            requirements,
        };
        let (posted, method, transactions) = self.route(&job, payment, signer).await?;
        Ok(Submission {
            posted,
            method,
            transactions,
        })
    }

    /// Opens a session with `payment` as its deposit, by the same paths and checks as
    /// [`Self::submit_job`]: `openSession{value}`, `openSessionWithToken` (after an approval
    /// when the allowance is short) or `openSessionWithPermit`. Nothing is sent when the token
    /// is unknown or not accepted, or the balance is short.
    pub async fn open_session<M, W>(
        &self,
        details: &SessionDetails,
        payment: &JobPayment,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<SessionSubmission>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let session = escrow::Session(details);
        let (opened, method, transactions) = self.route(&session, payment, signer).await?;
        Ok(SessionSubmission {
            opened,
            method,
            transactions,
        })
    }

    /// Adds `payment` to the open session `session` (its token must be the session's): ETH
    /// sent with `topUpSession`, an ERC-20 through `topUpSessionWithToken` after an approval
    /// when the allowance is short (the marketplace has no permit top-up). Nothing is sent
    /// when the token is not accepted or the balance is short.
    pub async fn top_up_session<M, W>(
        &self,
        session: SessionId,
        payment: &JobPayment,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<Vec<TxInfo>>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let token = self.check_token(&payment.token).await?;
        let owner = signer.address();
        self.check_balance(owner, &token, payment.amount).await?;
        let inner = &self.inner;
        let sender = inner.nonces.wrap(signer.clone(), owner);
        let contracts = &inner.contracts;
        if token.is_native() {
            let sent = contracts
                .top_up_session(session, payment.amount, &sender)
                .await;
            return Ok(vec![self.after_send(owner, sent, |tx| tx).await?]);
        }
        let top_up = contracts.top_up_session(session, payment.amount, &sender);
        let (_, transactions) = self
            .after_approval(&token, payment.amount, signer, top_up, |tx| tx)
            .await?;
        Ok(transactions)
    }

    /// Pays `payment` into `escrow` by the path its token takes; returns what was opened, the
    /// path and every transaction sent (approvals first).
    async fn route<E, M, W>(
        &self,
        escrow: &E,
        payment: &JobPayment,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<(E::Opened, PaymentMethod, Vec<TxInfo>)>
    where
        E: Escrow,
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let token = self.check_token(&payment.token).await?;
        let owner = signer.address();
        self.check_balance(owner, &token, payment.amount).await?;
        let inner = &self.inner;
        let sender = inner.nonces.wrap(signer.clone(), owner);
        let contracts = &inner.contracts;

        if token.is_native() {
            let sent = escrow.with_eth(contracts, payment.amount, &sender).await;
            let opened = self.after_send(owner, sent, E::tx).await?;
            let tx = *E::tx(&opened);
            return Ok((opened, PaymentMethod::Eth, vec![tx]));
        }

        let address = token.address();
        let facts = inner.caches.facts(contracts, &token).await?;
        if facts.permit && inner.config.prefer_permit {
            let slot = inner.approvals.slot(owner, address);
            let _approving = slot.lock().await;
            let spender = contracts.payment_spender();
            let covered = self.allowance(owner, spender, &token).await?.base_units()
                >= slot.reserved() + payment.amount.base_units();
            // A permit sets the allowance; it must not overwrite one that payments in flight
            // use.
            if !covered && slot.reserved().is_zero() {
                let deadline = unix_now() + inner.config.permit_validity.as_secs();
                let signature = contracts
                    .sign_permit(address, spender, payment.amount, deadline, signer.signer())
                    .await?;
                let sent = escrow
                    .with_permit(
                        contracts,
                        address,
                        payment.amount,
                        deadline,
                        &signature,
                        &sender,
                    )
                    .await;
                inner.caches.forget_allowance(owner, spender, address).await;
                let opened = self.after_send(owner, sent, E::tx).await?;
                let tx = *E::tx(&opened);
                return Ok((opened, PaymentMethod::Permit, vec![tx]));
            }
        }

        let pay = escrow.with_token(contracts, address, payment.amount, &sender);
        let (opened, transactions) = self
            .after_approval(&token, payment.amount, signer, pay, E::tx)
            .await?;
        let approval = transactions.len() > 1;
        Ok((opened, PaymentMethod::Token { approval }, transactions))
    }

    /// Sends `call` (not started yet: a future runs when awaited) once the signer's allowance
    /// for the marketplace covers `amount` on top of what payments in flight reserved,
    /// approving first when it does not; returns the outcome and every transaction sent
    /// (the approval, if any, then the call).
    async fn after_approval<T, M, W>(
        &self,
        token: &PaymentToken,
        amount: TokenAmount,
        signer: &Arc<SignerMiddleware<M, W>>,
        call: impl Future<Output = fabstir_contracts::Result<T>>,
        tx: fn(&T) -> &TxInfo,
    ) -> Result<(T, Vec<TxInfo>)>
    where
        M: Middleware + 'static,
        W: Signer + 'static,
    {
        let inner = &self.inner;
        let (reservation, mut transactions) = inner
            .approvals
            .reserve(
                &inner.contracts,
                &inner.caches,
                &inner.nonces,
                token,
                amount,
                signer,
            )
            .await?;
        let sent = call.await;
        reservation.release(&inner.caches).await;
        let outcome = self.after_send(signer.address(), sent, tx).await?;
        transactions.push(*tx(&outcome));
        Ok((outcome, transactions))
    }

    /// Checks that the token is in the registry and accepted on chain, with the registry's
    /// symbol and decimals; returns the registry's entry.
    async fn check_token(&self, token: &PaymentToken) -> Result<PaymentToken> {
        let inner = &self.inner;
        let known = inner
            .registry
            .by_address(token.address())
            .ok_or_else(|| Error::TokenNotAccepted(token.to_string()))?
            .clone();
        if known.decimals != token.decimals || known.symbol != token.symbol {
            return Err(Error::token_mismatch(
                token.address(),
                (&known.symbol, known.decimals),
                (&token.symbol, token.decimals),
            ));
        }
        if !inner.caches.facts(&inner.contracts, &known).await?.accepted {
            return Err(Error::TokenNotAccepted(known.to_string()));
        }
        Ok(known)
    }

    async fn check_balance(
        &self,
        owner: Address,
        token: &PaymentToken,
        need: TokenAmount,
    ) -> Result<()> {
        let have = self.balance(owner, token).await?;
        if have < need {
            return Err(Error::InsufficientBalance {
                symbol: token.symbol.clone(),
                need: token.format_amount(need),
                have: token.format_amount(have),
            });
        }
        Ok(())
    }

    /// Bookkeeping after this manager's payment: the sender's balances are stale from the
    /// block of the transaction (`tx` finds it in the outcome) on; a failed send resets the
    /// nonce counter.
    async fn after_send<T>(
        &self,
        owner: Address,
        result: fabstir_contracts::Result<T>,
        tx: fn(&T) -> &TxInfo,
    ) -> Result<T> {
        match result {
            Ok(outcome) => {
                self.observe_block(tx(&outcome).block);
                Ok(outcome)
            }
            Err(e) => {
                self.inner.nonces.reset(owner).await;
                Err(e.into())
            }
        }
    }
}
