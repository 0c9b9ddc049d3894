//! Nonces for parallel transactions from one address.
//!
//! A [`NonceBook`] keeps one counter per sending address. [`SharedNonce`] wraps the signer of
//! one call around that counter: it assigns the next nonce and submits under the counter's
//! lock, so transactions from concurrent tasks get consecutive nonces and never collide. Only
//! submission is serialised; waiting for receipts stays parallel. A failed submission resets
//! the counter, which is then read again from the chain (pending state).

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use ethers::providers::{Middleware, MiddlewareError, PendingTransaction};
use ethers::types::transaction::eip2718::TypedTransaction;
use ethers::types::{Address, BlockId, BlockNumber, U256};
use tokio::sync::Mutex;

/// One nonce counter per sending address. Holds no keys and no signers.
#[derive(Debug, Default)]
pub struct NonceBook {
    slots: DashMap<Address, Arc<Mutex<Option<U256>>>>,
}

impl NonceBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps `signer` (sending as `address`) so that its transactions take nonces from this
    /// book. The wrapper lives for the call; the book keeps only the counter.
    pub fn wrap<S: Middleware>(&self, signer: Arc<S>, address: Address) -> Arc<SharedNonce<S>> {
        let slot = self.slots.entry(address).or_default().clone();
        Arc::new(SharedNonce {
            inner: signer,
            address,
            slot,
        })
    }

    /// Forgets the counter of `address` (it is read from the chain again on next use).
    pub async fn reset(&self, address: Address) {
        if let Some(slot) = self.slots.get(&address).map(|s| s.clone()) {
            *slot.lock().await = None;
        }
    }
}

/// A signer wrapped for one call so that it takes its nonce from a shared [`NonceBook`]
/// counter.
#[derive(Debug)]
pub struct SharedNonce<S> {
    inner: Arc<S>,
    address: Address,
    slot: Arc<Mutex<Option<U256>>>,
}

/// Errors of [`SharedNonce`]: those of the wrapped middleware.
#[derive(Debug, thiserror::Error)]
pub enum SharedNonceError<S: Middleware> {
    /// The wrapped middleware failed.
    #[error("{0}")]
    Wrapped(S::Error),
}

impl<S: Middleware> MiddlewareError for SharedNonceError<S> {
    type Inner = S::Error;

    fn from_err(src: S::Error) -> Self {
        Self::Wrapped(src)
    }

    fn as_inner(&self) -> Option<&Self::Inner> {
        match self {
            Self::Wrapped(e) => Some(e),
        }
    }
}

#[async_trait]
impl<S: Middleware> Middleware for SharedNonce<S> {
    type Error = SharedNonceError<S>;
    type Provider = S::Provider;
    type Inner = S;

    fn inner(&self) -> &S {
        &self.inner
    }

    fn default_sender(&self) -> Option<Address> {
        Some(self.address)
    }

    async fn send_transaction<T: Into<TypedTransaction> + Send + Sync>(
        &self,
        tx: T,
        block: Option<BlockId>,
    ) -> Result<PendingTransaction<'_, Self::Provider>, Self::Error> {
        let mut tx = tx.into();
        let mut slot = self.slot.lock().await;
        let nonce = match *slot {
            Some(nonce) => nonce,
            None => self
                .inner
                .get_transaction_count(self.address, Some(BlockNumber::Pending.into()))
                .await
                .map_err(SharedNonceError::Wrapped)?,
        };
        tx.set_nonce(nonce);
        match self.inner.send_transaction(tx.clone(), block).await {
            Ok(pending) => {
                *slot = Some(nonce + 1);
                Ok(pending)
            }
            Err(first) if !first.to_string().to_ascii_lowercase().contains("nonce") => {
                // Not a nonce problem (a revert during estimation uses no nonce; a transport
                // error may or may not have sent it): never resend, read the nonce next time.
                *slot = None;
                Err(SharedNonceError::Wrapped(first))
            }
            Err(first) => {
                // Another sender (a second manager, a wallet) used this address: resynchronise
                // from the chain and, if the nonce was stale, try once more.
                let fresh = self
                    .inner
                    .get_transaction_count(self.address, Some(BlockNumber::Pending.into()))
                    .await
                    .map_err(SharedNonceError::Wrapped)?;
                if fresh == nonce {
                    *slot = None;
                    return Err(SharedNonceError::Wrapped(first));
                }
                tx.set_nonce(fresh);
                match self.inner.send_transaction(tx, block).await {
                    Ok(pending) => {
                        *slot = Some(fresh + 1);
                        Ok(pending)
                    }
                    Err(e) => {
                        *slot = None;
                        Err(SharedNonceError::Wrapped(e))
                    }
                }
            }
        }
    }
}
