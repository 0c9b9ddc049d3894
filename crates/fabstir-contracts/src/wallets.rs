//! Contract wallets as clients: their signatures are checked by asking the wallet (ERC-1271),
//! as the marketplace's `SignatureChecker` does on chain.

use ethers::providers::Middleware as _;
use ethers::types::{Address, Bytes, H256};

use crate::bindings::erc1271::Erc1271;
use crate::error::{Error, Result};
use crate::manager::HeadlessContractManager;

/// What `isValidSignature` answers for a signature the wallet accepts: its own selector.
const ERC1271_MAGIC: [u8; 4] = [0x16, 0x26, 0xba, 0x7e];

impl HeadlessContractManager {
    /// Whether the contract at `wallet` accepts `signature` over `digest` (ERC-1271), read at
    /// the latest block. An account with no code, a wallet that reverts or answers anything
    /// but the magic value: `false`. Only a chain that cannot be read is an error.
    pub async fn is_valid_signature(
        &self,
        wallet: Address,
        digest: H256,
        signature: &[u8],
    ) -> Result<bool> {
        if !self.has_code(wallet).await? {
            return Ok(false);
        }
        let contract = Erc1271::new(wallet, self.provider().clone());
        let answer = contract
            .is_valid_signature(digest.0, Bytes::from(signature.to_vec()))
            .call()
            .await;
        Ok(matches!(answer, Ok(magic) if magic == ERC1271_MAGIC))
    }

    /// Whether `account` holds contract code at the latest block.
    pub async fn has_code(&self, account: Address) -> Result<bool> {
        let code = self
            .provider()
            .get_code(account, None)
            .await
            .map_err(|e| Error::Rpc(e.to_string()))?;
        Ok(!code.is_empty())
    }
}
