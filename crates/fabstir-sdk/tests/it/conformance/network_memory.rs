//! The network suite over [`InMemoryNetwork`] (on an [`InMemoryChain`]).

use std::sync::Arc;

use async_trait::async_trait;
use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::job::prompt_hash;
use fabstir_core::primitives::Address;
use fabstir_core::{
    JobDetails, JobId, JobPayment, JobRequirements, ModelId, NodeCapabilities, PaymentToken,
    SessionDetails, SessionId, TokenAmount,
};
use fabstir_sdk::memory::{HostBehaviour, InMemoryChain, InMemoryNetwork, ScriptedHost};
use fabstir_sdk::{ChainLayer, NetworkLayer};

use super::network::{NetworkFixture, run_all};

struct Memory {
    chain: Arc<InMemoryChain>,
    network: InMemoryNetwork,
    host: ScriptedHost,
    client: SigningKey,
}

fn usdc() -> PaymentToken {
    PaymentToken::erc20(Address::repeat_byte(0xcc), "USDC", 6)
}

#[async_trait]
impl NetworkFixture for Memory {
    fn network(&self) -> &dyn NetworkLayer {
        &self.network
    }
    fn host(&self) -> &NodeCapabilities {
        &self.host.capabilities
    }
    fn token(&self) -> Address {
        usdc().address()
    }
    fn client(&self) -> &SigningKey {
        &self.client
    }
    async fn servable_job(&self) -> JobId {
        let details = JobDetails {
            model: self.host.capabilities.models[0],
            prompt_hash: prompt_hash("conformance"),
            max_tokens: 8,
            price_per_token: TokenAmount::from_base_units(100u64),
            deadline: self.chain.now().await.unwrap() + 600,
        };
        let payment = JobPayment::for_job(usdc(), &details).unwrap();
        let requirements = JobRequirements {
            assigned_host: Some(self.host.capabilities.eth_address),
        };
        let job = self
            .chain
            .post_job(&details, &requirements, &payment, &self.client)
            .await
            .unwrap();
        let peer = &self.host.capabilities.peer_id;
        self.network.announce_posted(peer, job).await.unwrap();
        job
    }
    async fn servable_session(&self, covered: u64) -> SessionId {
        let details = SessionDetails {
            model: self.host.capabilities.models[0],
            host: self.host.capabilities.eth_address,
            price_per_token: TokenAmount::from_base_units(100u64),
            expiry: self.chain.now().await.unwrap() + 3_600,
        };
        let payment = JobPayment {
            token: usdc(),
            amount: TokenAmount::from_base_units(covered * 100),
        };
        self.chain
            .open_session(&details, &payment, &self.client)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_in_memory_network_conforms() {
    let chain = Arc::new(InMemoryChain::new(
        31_337,
        vec![usdc()],
        Address::repeat_byte(0xee),
    ));
    let client = SigningKey::from_bytes(&[1u8; 32].into()).unwrap();
    chain.mint(
        address_of(&client),
        usdc().address(),
        TokenAmount::from_base_units(1_000_000u64),
    );
    let host = ScriptedHost::new(
        1,
        ModelId::from_name("conformance"),
        usdc().address(),
        TokenAmount::from_base_units(100u64),
        HostBehaviour::Honest,
    );
    let network = InMemoryNetwork::new(chain.clone(), vec![host.clone()]);
    run_all(&Memory {
        chain,
        network,
        host,
        client,
    })
    .await;
}
