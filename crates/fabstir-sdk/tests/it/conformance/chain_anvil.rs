//! The chain suite over [`ChainClient`] on a real anvil chain with the contracts deployed.

use async_trait::async_trait;
use fabstir_contracts::testing::{Account, LocalChain};
use fabstir_contracts::{LocalDeployConfig, NodeRegistration};
use fabstir_core::auth::SigningKey;
use fabstir_core::cid::Cid;
use fabstir_core::primitives::Address;
use fabstir_core::receipt::SignedReceipt;
use fabstir_core::{JobId, ModelId, PaymentToken, TokenAmount, TokenPrice};
use fabstir_payments::{PaymentConfig, PaymentManager, TokenRegistry};
use fabstir_sdk::{ChainClient, ChainLayer};

use super::chain::{ChainFixture, run_all};

struct Anvil {
    chain: LocalChain,
    client: ChainClient,
    client_key: SigningKey,
    stranger_key: SigningKey,
    host_key: SigningKey,
}

impl Anvil {
    fn host_account(&self) -> &Account {
        &self.chain.hosts()[0]
    }
}

use fabstir_contracts::testing::test_peer_id as peer_id;

#[async_trait]
impl ChainFixture for Anvil {
    fn chain(&self) -> &dyn ChainLayer {
        &self.client
    }
    fn client(&self) -> &SigningKey {
        &self.client_key
    }
    fn stranger(&self) -> &SigningKey {
        &self.stranger_key
    }
    fn token(&self) -> PaymentToken {
        self.chain.token("USDC").unwrap().clone()
    }
    fn host(&self) -> Address {
        self.host_account().address()
    }
    fn host_key(&self) -> &SigningKey {
        &self.host_key
    }
    fn model(&self) -> ModelId {
        ModelId::from_name("conformance")
    }
    fn fee_bps(&self) -> u64 {
        u64::from(LocalDeployConfig::default().fee_bps)
    }
    async fn claim(&self, job: JobId) {
        let host = &self.host_account().signer;
        self.chain.manager().claim_job(job, host).await.unwrap();
    }
    async fn submit(
        &self,
        job: JobId,
        cid: &Cid,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()> {
        let host = &self.host_account().signer;
        self.chain
            .manager()
            .submit_result(job, cid.to_string().as_bytes(), receipt, host)
            .await?;
        Ok(())
    }
    async fn pass_time(&self, secs: u64) {
        self.chain.advance_time(secs).await.unwrap();
    }
    async fn settle_session(
        &self,
        session: JobId,
        receipt: &SignedReceipt,
    ) -> fabstir_sdk::Result<()> {
        let host = &self.host_account().signer;
        self.chain
            .manager()
            .settle_session(session, receipt, host)
            .await?;
        Ok(())
    }
    async fn close_session(
        &self,
        session: JobId,
        receipt: Option<&SignedReceipt>,
    ) -> fabstir_sdk::Result<()> {
        let host = &self.host_account().signer;
        self.chain
            .manager()
            .close_session(session, receipt, host)
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anvil_backed_chain_conforms() {
    let chain = LocalChain::start().await.unwrap();
    let manager = chain.manager().clone();
    let registration = NodeRegistration {
        peer_id: peer_id(7),
        models: vec![ModelId::from_name("conformance")],
        prices: vec![TokenPrice {
            token: chain.token("USDC").unwrap().address(),
            price_per_token: TokenAmount::from_base_units(10u64),
        }],
        metadata: String::new(),
        stake: manager.min_stake().await.unwrap(),
    };
    manager
        .register_node(&registration, &chain.hosts()[0].signer)
        .await
        .unwrap();
    let payments = PaymentManager::new(
        manager,
        TokenRegistry::from_deployment(chain.deployment()),
        PaymentConfig::default(),
    );
    let client = ChainClient::new(payments, chain.deployment().start_block);
    let client_key = chain.client().wallet.signer().clone();
    let stranger_key = chain.unfunded()[0].wallet.signer().clone();
    let host_key = chain.hosts()[0].wallet.signer().clone();
    let fixture = Anvil {
        chain,
        client,
        client_key,
        stranger_key,
        host_key,
    };
    run_all(&fixture).await;
    // The escrow holds exactly what open jobs owe, and every token is where it should be.
    fixture.chain.assert_conserved(&[]).await;
}
