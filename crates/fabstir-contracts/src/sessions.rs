//! Session transactions: open (ETH, ERC-20, permit), top up, settle part, close, ask to close,
//! expire. Each takes the session id; the manager reads the session's terms (see
//! [`session_view`](crate::session_view)) and passes them back, as the contract wants.

use std::sync::Arc;

use ethers::middleware::SignerMiddleware;
use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::{Address, Bytes, H256, Signature, TransactionReceipt, U256};
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::{SessionDetails, SessionId, SessionSettlement, TokenAmount};

use crate::bindings::job_marketplace::{
    self as abi, Receipt, SessionClosedFilter, SessionOpenedFilter, SessionSettledFilter,
};
use crate::convert;
use crate::error::Result;
use crate::jobs::find_log;
use crate::manager::{HeadlessContractManager, send, tx_info};
use crate::types::{ClosedSession, OpenedSession, PartialSettlement, TxInfo};

impl HeadlessContractManager {
    /// Opens a session paid in ETH: `deposit` wei are escrowed with the transaction. The host
    /// must be active, serve the model and ask at most the price in ETH.
    pub async fn open_session<S: Middleware + 'static>(
        &self,
        details: &SessionDetails,
        deposit: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<OpenedSession> {
        let call = self
            .marketplace(signer)
            .open_session(details_to_abi(details))
            .value(deposit.base_units());
        opened(self, &send(call).await?).await
    }

    /// Opens a session paid with `deposit` of the ERC-20 `token`; the signer must have approved
    /// the marketplace ([`Self::payment_spender`]) for at least that.
    pub async fn open_session_with_token<S: Middleware + 'static>(
        &self,
        details: &SessionDetails,
        token: Address,
        deposit: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<OpenedSession> {
        let call = self.marketplace(signer).open_session_with_token(
            details_to_abi(details),
            token,
            deposit.base_units(),
        );
        opened(self, &send(call).await?).await
    }

    /// Opens a session paid with an EIP-2612 token in one transaction: the signer's wallet
    /// signs a permit for the marketplace, valid until `permit_deadline` (unix seconds).
    pub async fn open_session_with_permit<M: Middleware + 'static, W: Signer + 'static>(
        &self,
        details: &SessionDetails,
        token: Address,
        deposit: TokenAmount,
        permit_deadline: u64,
        signer: &Arc<SignerMiddleware<M, W>>,
    ) -> Result<OpenedSession> {
        let spender = self.payment_spender();
        let signature = self
            .sign_permit(token, spender, deposit, permit_deadline, signer.signer())
            .await?;
        self.open_session_with_permit_signature(
            details,
            token,
            deposit,
            permit_deadline,
            &signature,
            signer,
        )
        .await
    }

    /// Like [`Self::open_session_with_permit`] with a permit signed elsewhere.
    pub async fn open_session_with_permit_signature<S: Middleware + 'static>(
        &self,
        details: &SessionDetails,
        token: Address,
        deposit: TokenAmount,
        permit_deadline: u64,
        signature: &Signature,
        signer: &Arc<S>,
    ) -> Result<OpenedSession> {
        let (v, r, s) = convert::split_signature(signature)?;
        let call = self.marketplace(signer).open_session_with_permit(
            details_to_abi(details),
            token,
            deposit.base_units(),
            U256::from(permit_deadline),
            v,
            r,
            s,
        );
        opened(self, &send(call).await?).await
    }

    /// Adds `amount` to an open session's deposit, in the session's token (ETH sent with the
    /// transaction, or an ERC-20 the signer approved); only the session's client.
    pub async fn top_up_session<S: Middleware + 'static>(
        &self,
        session: SessionId,
        amount: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let view = self.open_session_view(session).await?;
        let market = self.marketplace(signer);
        let receipt = if view.terms.token.is_zero() {
            send(
                market
                    .top_up_session(session.to_u256(), view.terms)
                    .value(amount.base_units()),
            )
            .await?
        } else {
            send(market.top_up_session_with_token(
                session.to_u256(),
                view.terms,
                amount.base_units(),
            ))
            .await?
        };
        Ok(tx_info(&receipt))
    }

    /// Settles part of a session with the client's newest receipt (tokens over every prompt
    /// so far); only its host. Pays only the increase since the last settlement.
    pub async fn settle_session<S: Middleware + 'static>(
        &self,
        session: SessionId,
        receipt: &SignedReceipt,
        signer: &Arc<S>,
    ) -> Result<PartialSettlement> {
        let view = self.open_session_view(session).await?;
        let (receipt_abi, signature) = receipt_to_abi(receipt);
        let call = self.marketplace(signer).settle_session(
            session.to_u256(),
            view.terms,
            receipt_abi,
            signature,
        );
        let mined = send(call).await?;
        let event = find_log::<SessionSettledFilter>(self, &mined)?;
        Ok(PartialSettlement {
            session,
            tokens: event.tokens,
            paid: TokenAmount(event.paid),
            fee: TokenAmount(event.fee),
            tx: tx_info(&mined),
        })
    }

    /// Closes a session with the client's newest receipt, paying the increase since the last
    /// settlement and refunding the rest of the deposit; only its host. `None` closes without
    /// a new receipt (nothing more is paid): to decline a session, or when nothing was served
    /// since the last settlement.
    pub async fn close_session<S: Middleware + 'static>(
        &self,
        session: SessionId,
        receipt: Option<&SignedReceipt>,
        signer: &Arc<S>,
    ) -> Result<ClosedSession> {
        let view = self.open_session_view(session).await?;
        let (receipt_abi, signature) = match receipt {
            Some(receipt) => receipt_to_abi(receipt),
            None => (
                Receipt {
                    tokens: view.settled_tokens,
                    transcript: [0; 32],
                },
                Bytes::new(),
            ),
        };
        let call = self.marketplace(signer).close_session(
            session.to_u256(),
            view.terms,
            receipt_abi,
            signature,
        );
        let mined = send(call).await?;
        let event = find_log::<SessionClosedFilter>(self, &mined)?;
        self.forget_session(session).await;
        Ok(ClosedSession {
            settlement: SessionSettlement {
                session,
                tokens: event.tokens,
                transcript: H256(event.transcript),
                paid: TokenAmount(event.paid),
                fee: TokenAmount(event.fee),
                refund: TokenAmount(event.refund),
            },
            tx: tx_info(&mined),
        })
    }

    /// The client of a session whose host is silent asks to close: the host may settle or
    /// close until the close window ends, then anyone may expire the session.
    pub async fn request_session_close<S: Middleware + 'static>(
        &self,
        session: SessionId,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let view = self.open_session_view(session).await?;
        let call = self
            .marketplace(signer)
            .request_session_close(session.to_u256(), view.terms);
        Ok(tx_info(&send(call).await?))
    }

    /// Expires a session whose time is up (anyone may): the deposit not settled goes back to
    /// the client.
    pub async fn expire_session<S: Middleware + 'static>(
        &self,
        session: SessionId,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let view = self.open_session_view(session).await?;
        let call = self
            .marketplace(signer)
            .expire_session(session.to_u256(), view.terms);
        let mined = send(call).await?;
        self.forget_session(session).await;
        Ok(tx_info(&mined))
    }
}

/// The opened session, its terms cached from the SessionOpened event.
async fn opened(
    manager: &HeadlessContractManager,
    receipt: &TransactionReceipt,
) -> Result<OpenedSession> {
    let event = find_log::<SessionOpenedFilter>(manager, receipt)?;
    let session = convert::job_id(event.session_id)?;
    manager
        .session_terms_cache()
        .insert(session.0, event.terms)
        .await;
    Ok(OpenedSession {
        session,
        tx: tx_info(receipt),
    })
}

fn details_to_abi(details: &SessionDetails) -> abi::SessionDetails {
    abi::SessionDetails {
        model_id: details.model.0,
        host: details.host,
        price_per_token: details.price_per_token.base_units(),
        expiry: details.expiry,
    }
}

fn receipt_to_abi(receipt: &SignedReceipt) -> (Receipt, Bytes) {
    (
        Receipt {
            tokens: receipt.tokens,
            transcript: receipt.transcript.0,
        },
        Bytes::from(receipt.signature.clone()),
    )
}
