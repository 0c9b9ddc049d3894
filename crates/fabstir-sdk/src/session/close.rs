//! Ending a session: through its host (`EndSession`, then its close on chain), or through
//! the chain when the host does not answer (ask to close, expire after the close window).

use std::sync::Arc;

use ethers::signers::LocalWallet;
use fabstir_core::{NodePeerId, ProviderQuery, SessionId, SessionStatus};

use super::SessionClosed;
use crate::Result;
use crate::network::WalletClientSigner;
use crate::sdk::Inner;

/// Ends `id` through `host` (`EndSession`), waiting for its close on chain; a host that is
/// unknown or does not answer in time leaves the session to the chain: ask to close, expire
/// after the close window, in the background. What was paid is read from the chain.
pub(super) async fn end(
    inner: &Arc<Inner>,
    wallet: &Arc<LocalWallet>,
    id: SessionId,
    host: Option<&NodePeerId>,
) -> Result<SessionClosed> {
    let mut cooperative = false;
    if let Some(host) = host {
        let signer = Arc::new(WalletClientSigner(wallet.clone()));
        match inner.network.end_session(host, id, signer).await {
            Ok(_) => cooperative = wait_closed(inner, id).await?,
            Err(e) => tracing::warn!(session = %id, error = %e, "the host did not end the session"),
        }
    }
    if !cooperative {
        recover(inner, wallet, id).await;
    }
    let session = inner.chain.session(id).await?;
    Ok(SessionClosed {
        session: id,
        tokens: session.settled_tokens,
        cost: session.settled_cost(),
        cooperative,
    })
}

/// Waits (up to the claim timeout) for the host's close of `id` on chain.
async fn wait_closed(inner: &Inner, id: SessionId) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + inner.config.timeouts.claim;
    loop {
        if inner.chain.session(id).await?.status == SessionStatus::Closed {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(inner.config.poll_interval).await;
    }
}

/// Gets `id`'s unsettled deposit back in the background: ask to close, then expire.
pub(super) async fn recover(inner: &Arc<Inner>, wallet: &Arc<LocalWallet>, id: SessionId) {
    let task_inner = inner.clone();
    let wallet = wallet.clone();
    inner.recoveries.lock().await.spawn(async move {
        crate::recovery::recover_session(&task_inner, id, wallet.signer()).await;
    });
}

/// Closes `id`, a session of `wallet`'s, through its host when discovery finds it (see
/// [`crate::FabstirSdk::close_session`]).
pub(crate) async fn close_by_id(
    inner: &Arc<Inner>,
    wallet: &Arc<LocalWallet>,
    id: SessionId,
) -> Result<SessionClosed> {
    let session = inner.chain.session(id).await?;
    if !session.status.is_open() {
        return Ok(SessionClosed {
            session: id,
            tokens: session.settled_tokens,
            cost: session.settled_cost(),
            cooperative: session.status == SessionStatus::Closed,
        });
    }
    let query = ProviderQuery::new(session.details.model, session.token);
    let host = match inner.network.find_providers(&query).await {
        Ok(nodes) => nodes
            .into_iter()
            .find(|n| n.capabilities.eth_address == session.details.host)
            .map(|n| n.capabilities.peer_id),
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "finding the session's host");
            None
        }
    };
    end(inner, wallet, id, host.as_ref()).await
}
