//! NodeRegistry writes: register (with the stake approval it needs), update, unregister,
//! withdraw.

use std::sync::Arc;

use ethers::providers::Middleware;
use fabstir_core::{ModelId, TokenAmount, TokenPrice};

use crate::bindings::node_registry::NodeRegistry;
use crate::convert;
use crate::error::Result;
use crate::manager::{HeadlessContractManager, send, sender, tx_info};
use crate::types::{NodeRegistration, TxInfo};

impl HeadlessContractManager {
    fn registry<S: Middleware + 'static>(&self, signer: &Arc<S>) -> NodeRegistry<S> {
        NodeRegistry::new(self.addresses().node_registry, signer.clone())
    }

    /// Registers the signer as a host. When the registry's FAB allowance is below the stake,
    /// an approval for exactly the stake is sent first. Returns the `register` transaction.
    pub async fn register_node<S: Middleware + 'static>(
        &self,
        registration: &NodeRegistration,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let owner = sender(signer.as_ref())?;
        let registry = self.addresses().node_registry;
        let fab = self.stake_token().await?;
        if self.allowance(fab, owner, registry).await? < registration.stake {
            self.approve(fab, registry, registration.stake, signer)
                .await?;
        }
        let args = convert::registration_to_abi(registration);
        let call = self.registry(signer).register(
            args.peer_id,
            args.models,
            args.tokens,
            args.prices,
            args.metadata,
            args.stake,
        );
        Ok(tx_info(&send(call).await?))
    }

    /// Replaces the models the signer serves.
    pub async fn update_models<S: Middleware + 'static>(
        &self,
        models: &[ModelId],
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let call = self
            .registry(signer)
            .update_models(convert::models_to_abi(models));
        Ok(tx_info(&send(call).await?))
    }

    /// Sets the signer's prices (a zero price removes that token).
    pub async fn set_prices<S: Middleware + 'static>(
        &self,
        prices: &[TokenPrice],
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let (tokens, prices) = convert::prices_to_abi(prices);
        let call = self.registry(signer).set_prices(tokens, prices);
        Ok(tx_info(&send(call).await?))
    }

    /// Replaces the signer's metadata.
    pub async fn update_metadata<S: Middleware + 'static>(
        &self,
        metadata: &str,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let call = self.registry(signer).update_metadata(metadata.to_owned());
        Ok(tx_info(&send(call).await?))
    }

    /// Deactivates the signer and starts the unbonding delay.
    pub async fn unregister_node<S: Middleware + 'static>(
        &self,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        Ok(tx_info(&send(self.registry(signer).unregister()).await?))
    }

    /// Withdraws the signer's stake after unbonding.
    pub async fn withdraw_stake<S: Middleware + 'static>(&self, signer: &Arc<S>) -> Result<TxInfo> {
        Ok(tx_info(
            &send(self.registry(signer).withdraw_stake()).await?,
        ))
    }

    /// Owner only: sets the minimum stake for new registrations (FAB base units).
    pub async fn set_min_stake<S: Middleware + 'static>(
        &self,
        min_stake: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let call = self.registry(signer).set_min_stake(min_stake.base_units());
        Ok(tx_info(&send(call).await?))
    }

    /// Owner only: sets the unbonding delay (seconds) for future unregistrations.
    pub async fn set_unbonding_delay<S: Middleware + 'static>(
        &self,
        seconds: u64,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let call = self.registry(signer).set_unbonding_delay(seconds);
        Ok(tx_info(&send(call).await?))
    }
}
