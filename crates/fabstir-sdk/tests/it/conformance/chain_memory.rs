//! The chain suite over [`InMemoryChain`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::cid::Cid;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::{JobId, ModelId, PaymentToken, TokenAmount};
use fabstir_sdk::ChainLayer;
use fabstir_sdk::memory::{FEE_BPS, InMemoryChain};

use super::chain::{ChainFixture, run_all};

struct Memory {
    chain: Arc<InMemoryChain>,
    client: SigningKey,
    stranger: SigningKey,
    host: SigningKey,
}

fn key(byte: u8) -> SigningKey {
    SigningKey::from_bytes(&[byte; 32].into()).unwrap()
}

fn usdc() -> PaymentToken {
    PaymentToken::erc20(Address::repeat_byte(0xcc), "USDC", 6)
}

#[async_trait]
impl ChainFixture for Memory {
    fn chain(&self) -> &dyn ChainLayer {
        self.chain.as_ref()
    }
    fn client(&self) -> &SigningKey {
        &self.client
    }
    fn stranger(&self) -> &SigningKey {
        &self.stranger
    }
    fn token(&self) -> PaymentToken {
        usdc()
    }
    fn host(&self) -> Address {
        address_of(self.host_key())
    }
    fn host_key(&self) -> &SigningKey {
        &self.host
    }
    fn model(&self) -> ModelId {
        ModelId::from_name("conformance")
    }
    fn fee_bps(&self) -> u64 {
        u64::from(FEE_BPS)
    }
    async fn claim(&self, job: JobId) {
        self.chain.claim(job, self.host()).unwrap();
    }
    async fn submit(
        &self,
        job: JobId,
        cid: &Cid,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()> {
        self.chain.submit(job, self.host(), cid, receipt)
    }
    async fn pass_time(&self, secs: u64) {
        self.chain.advance(Duration::from_secs(secs));
    }
    async fn settle_session(
        &self,
        session: JobId,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()> {
        self.chain
            .settle_session(session, self.host(), receipt)
            .map(drop)
    }
    async fn close_session(
        &self,
        session: JobId,
        receipt: Option<&SignedReceipt>,
    ) -> fabstir_sdk::Result<()> {
        self.chain
            .close_session(session, self.host(), receipt)
            .map(drop)
    }
}

#[tokio::test]
async fn the_in_memory_chain_conforms() {
    let chain = Arc::new(InMemoryChain::new(
        31_337,
        vec![usdc()],
        Address::repeat_byte(0xee),
    ));
    let client = key(1);
    chain.mint(
        address_of(&client),
        usdc().address(),
        TokenAmount::from_base_units(1_000_000u64),
    );
    run_all(&Memory {
        chain,
        client,
        stranger: key(2),
        host: key(3),
    })
    .await;
}
