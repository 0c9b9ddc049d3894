//! ERC-20 writes (approve, faucet mint) and EIP-2612 permit signatures.

use std::sync::Arc;

use ethers::providers::Middleware;
use ethers::signers::Signer;
use ethers::types::transaction::eip712::TypedData;
use ethers::types::{Address, Signature};
use fabstir_core::TokenAmount;

use ethers::providers::{Http, Provider};

use crate::bindings::erc20::Erc20Permit;
use crate::bindings::test_usdc::TestUSDC;
use crate::error::{Error, Result};
use crate::manager::{HeadlessContractManager, call, send, tx_info};
use crate::types::TxInfo;

impl HeadlessContractManager {
    /// The ERC-20 (and EIP-2612) binding of `token` on the read-only provider.
    pub fn erc20(&self, token: Address) -> Erc20Permit<Provider<Http>> {
        Erc20Permit::new(token, self.provider().clone())
    }

    /// Approves `spender` for `amount` of `token` from the signer. Works for tokens that
    /// return nothing (USDT); for tokens that require a zero allowance first, set it to zero
    /// before changing a non-zero allowance.
    pub async fn approve<S: Middleware + 'static>(
        &self,
        token: Address,
        spender: Address,
        amount: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let contract = Erc20Permit::new(token, signer.clone());
        let receipt = send(contract.approve(spender, amount.base_units())).await?;
        Ok(tx_info(&receipt))
    }

    /// Mints `amount` of a test token to `to` through its open faucet (local chains only:
    /// real tokens have no such function and the call reverts).
    pub async fn faucet_mint<S: Middleware + 'static>(
        &self,
        token: Address,
        to: Address,
        amount: TokenAmount,
        signer: &Arc<S>,
    ) -> Result<TxInfo> {
        let contract = TestUSDC::new(token, signer.clone());
        let receipt = send(contract.mint(to, amount.base_units())).await?;
        Ok(tx_info(&receipt))
    }

    /// Signs an EIP-2612 permit with `wallet` letting `spender` move `amount` of the wallet's
    /// `token` until `deadline` (unix seconds). The token's EIP-712 domain (ERC-5267) and the
    /// owner's nonce are read from the chain; nothing is sent.
    pub async fn sign_permit<W: Signer>(
        &self,
        token: Address,
        spender: Address,
        amount: TokenAmount,
        deadline: u64,
        wallet: &W,
    ) -> Result<Signature> {
        let owner = wallet.address();
        let contract = self.erc20(token);
        let (_, name, version, chain_id, verifying_contract, _, _) =
            call(contract.eip_712_domain()).await?;
        let nonce = call(contract.nonces(owner)).await?;
        let typed: TypedData = serde_json::from_value(serde_json::json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Permit": [
                    {"name": "owner", "type": "address"},
                    {"name": "spender", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"}
                ]
            },
            "primaryType": "Permit",
            "domain": {
                "name": name,
                "version": version,
                "chainId": chain_id,
                "verifyingContract": verifying_contract
            },
            "message": {
                "owner": owner,
                "spender": spender,
                "value": amount.base_units(),
                "nonce": nonce,
                "deadline": deadline
            }
        }))
        .map_err(|e| Error::Signing(format!("building the permit: {e}")))?;
        wallet
            .sign_typed_data(&typed)
            .await
            .map_err(|e| Error::Signing(e.to_string()))
    }
}
