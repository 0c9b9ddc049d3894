//! The node's chain side: idempotent registration, and the watcher that claims jobs announced
//! on chain for the models this host serves.

use std::sync::Arc;

use fabstir_contracts::{
    HeadlessContractManager, MarketplaceEvent, NodeRegistration, WalletSigner,
};
use fabstir_core::primitives::Address;
use fabstir_core::{ModelId, NodePeerId, TokenAmount, TokenPrice};
use fabstir_payments::SharedNonce;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::host::{Host, Terms};
use crate::{Error, Result};

/// What a host registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The host's peer id.
    pub peer_id: NodePeerId,
    /// Models served.
    pub models: Vec<ModelId>,
    /// One price per accepted payment token.
    pub prices: Vec<TokenPrice>,
    /// Free-form metadata.
    pub metadata: String,
    /// FAB to stake; the registry's minimum when `None`.
    pub stake: Option<TokenAmount>,
}

/// What [`ensure_registered`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The host was registered now.
    Registered,
    /// It was registered already; models or prices were updated to the configuration.
    Updated,
    /// It was registered already with the same models and prices.
    Unchanged,
}

/// Registers the host unless it is registered; brings models and prices in line with the
/// configuration when it is. A registration under another peer id is an error (the operator
/// must unregister first), never silently overwritten.
pub async fn ensure_registered(
    contracts: &HeadlessContractManager,
    sender: &Arc<SharedNonce<WalletSigner>>,
    address: Address,
    registration: &Registration,
) -> Result<RegistrationOutcome> {
    match contracts.node(address).await? {
        None => {
            let stake = match registration.stake {
                Some(stake) => stake,
                None => contracts.min_stake().await?,
            };
            contracts
                .register_node(
                    &NodeRegistration {
                        peer_id: registration.peer_id.clone(),
                        models: registration.models.clone(),
                        prices: registration.prices.clone(),
                        metadata: registration.metadata.clone(),
                        stake,
                    },
                    sender,
                )
                .await?;
            Ok(RegistrationOutcome::Registered)
        }
        Some(node) => {
            let info = node.info;
            if info.peer_id != registration.peer_id {
                return Err(Error::Config(format!(
                    "{address:#x} is registered with peer id {}, this node is {}: unregister first",
                    info.peer_id, registration.peer_id
                )));
            }
            if !info.active {
                return Err(Error::Config(format!(
                    "{address:#x} is unbonding; withdraw the stake and register again"
                )));
            }
            let mut outcome = RegistrationOutcome::Unchanged;
            if sorted(&info.models) != sorted(&registration.models) {
                contracts
                    .update_models(&registration.models, sender)
                    .await?;
                outcome = RegistrationOutcome::Updated;
            }
            if sorted_prices(&info.prices) != sorted_prices(&registration.prices) {
                contracts.set_prices(&registration.prices, sender).await?;
                outcome = RegistrationOutcome::Updated;
            }
            Ok(outcome)
        }
    }
}

fn sorted(models: &[ModelId]) -> Vec<ModelId> {
    let mut models = models.to_vec();
    models.sort();
    models
}

fn sorted_prices(prices: &[TokenPrice]) -> Vec<(Address, TokenAmount)> {
    let mut prices: Vec<_> = prices
        .iter()
        .map(|p| (p.token, p.price_per_token))
        .collect();
    prices.sort();
    prices
}

/// Watches the marketplace from `from_block` and claims the jobs this host takes on their
/// terms (its models and prices, naming it or no host), until `shutdown`.
pub async fn watch_jobs(host: Arc<Host>, from_block: u64, shutdown: CancellationToken) {
    let contracts = host.contracts().clone();
    let mut events = Box::pin(contracts.watch_events(from_block));
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        let Some(next) = next else { return };
        let event = match next {
            Ok(logged) => logged.event,
            Err(e) => {
                tracing::warn!(error = %e, "event poll failed");
                continue;
            }
        };
        if let MarketplaceEvent::JobPosted {
            job,
            client,
            model,
            token,
            amount,
            host: assigned,
            max_tokens,
            price_per_token,
            deadline,
            ..
        } = event
        {
            let terms = Terms {
                model,
                token,
                price_per_token,
                max_tokens,
                host: assigned,
                client,
                deadline: Some(deadline),
                amount: Some(amount),
            };
            if let Err(refusal) = host.check_terms(&terms) {
                tracing::debug!(%job, %refusal, "not claiming job");
                continue;
            }
            let host = host.clone();
            tokio::spawn(async move {
                if let Err((reason, message)) = host.ensure_claimed(job).await {
                    tracing::debug!(%job, ?reason, %message, "not claiming job");
                }
            });
        }
    }
}
