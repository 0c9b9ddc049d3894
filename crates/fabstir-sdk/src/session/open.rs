//! Opening a session: discover, rank, ask the best host for a quote, check it as a job's,
//! and open the session on chain with the deposit (one transaction, two with an approval).

use std::sync::Arc;

use ethers::signers::{LocalWallet, Signer as _};
use fabstir_core::primitives::H256;
use fabstir_core::wire::QuoteRequest;
use fabstir_core::{
    JobPayment, ModelId, NodePeerId, PaymentToken, ProviderQuery, SelectionCriteria, SessionDetails,
};

use super::{Current, SessionRequest};
use crate::lifecycle::{CreditLimit, check_quote};
use crate::sdk::Inner;
use crate::{Error, Result};

/// Opens a session for `request` with the best ranked host not in `excluded`.
pub(super) async fn open_current(
    inner: &Inner,
    wallet: &Arc<LocalWallet>,
    request: &SessionRequest,
    token: &PaymentToken,
    excluded: &[NodePeerId],
) -> Result<Current> {
    let model = ModelId::from_name(&request.model);
    let mut criteria = SelectionCriteria::new(ProviderQuery {
        model,
        token: token.address(),
        max_price: request.max_price,
        max_latency: request.max_latency,
    });
    criteria.weights = request.weights;
    criteria.exclude = excluded.to_vec();
    let nodes = inner.network.find_providers(&criteria.query).await?;
    let ranked = fabstir_core::rank(nodes, &criteria)
        .map_err(|_| Error::NoProviders(request.model.clone()))?;
    let mut last = None;
    for host in ranked {
        let peer = host.capabilities.peer_id.clone();
        let offered = request
            .max_price
            .or_else(|| host.capabilities.price_for(token.address()))
            .unwrap_or_default();
        let ask = QuoteRequest {
            model,
            max_tokens: request.max_tokens,
            token: token.address(),
            offered_price_per_token: offered,
            // A session has no one prompt to commit to.
            prompt_hash: H256::zero(),
            client: wallet.address(),
        };
        let quote = match inner.network.quote(&peer, ask.clone()).await {
            Ok(quote) => quote,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let credit = CreditLimit {
            tokens: inner.config.max_credit_window,
            value: None,
        };
        if let Err(reason) = check_quote(&quote, &ask, &host.capabilities, credit) {
            last = Some(Error::BadQuote { host: peer, reason });
            continue;
        }
        let now = inner.chain.now().await?;
        let details = SessionDetails {
            model,
            host: quote.host,
            price_per_token: quote.price_per_token,
            expiry: now + request.duration.as_secs(),
        };
        let payment = JobPayment {
            token: token.clone(),
            amount: request.deposit,
        };
        let id = inner
            .chain
            .open_session(&details, &payment, wallet.signer())
            .await?;
        tracing::info!(session = %id, host = %peer, "session opened");
        return Ok(Current {
            id,
            host: peer,
            price: quote.price_per_token,
            deposit: request.deposit,
            receipted: 0,
        });
    }
    Err(match last {
        Some(last) => Error::AllAttemptsFailed {
            attempts: 1,
            last: Box::new(last),
        },
        None => Error::NoProviders(request.model.clone()),
    })
}
