//! Restarts: the node keeps its libp2p key and its results in the storage folder, and
//! registration is idempotent, so a restarted host is the same host on chain and on the network.

use fabstir_core::primitives::Address;
use fabstir_core::{ModelId, NodePeerId, TokenAmount, TokenPrice};
use fabstir_node::chain::{Registration, RegistrationOutcome, ensure_registered};
use fabstir_payments::NonceBook;

use crate::common::{
    ETH_PRICE, Env, MODEL, USDC_PRICE, dial, fetch_verified, run_usdc_job, shut_down,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_keeps_its_peer_id_and_registration_and_serves_old_results() {
    let env = Env::new().await;
    let a = env.host_address(0);
    let model = ModelId::from_name(MODEL);
    let host = env.start_host(0).await;
    let peer = host.peer_id();
    let registered = env.manager.node(a).await.unwrap().expect("registered");
    assert_eq!(
        registered.info.peer_id,
        NodePeerId::from_bytes(peer.to_bytes()).unwrap()
    );
    assert!(registered.info.active);
    let client = env.client_network().await;
    dial(&client, &host).await;
    let (first_job, first) = run_usdc_job(&env, &client, &host, 0).await;
    let cid = first.done.result_cid;

    let sent = env.nonce(a).await;
    host.stop().await.unwrap();
    let host = env.start_host(0).await;

    // Same peer id, and nothing sent to register again: the registration is as it was.
    assert_eq!(host.peer_id(), peer);
    assert_eq!(host.registration, RegistrationOutcome::Unchanged);
    assert_eq!(env.nonce(a).await, sent, "the restart sent no transaction");
    assert_eq!(
        env.manager.node(a).await.unwrap().expect("registered"),
        registered
    );
    let (hosts, total) = env.manager.nodes_for_model(model, 0, 10).await.unwrap();
    assert_eq!((hosts, total), (vec![a], 1));
    // Asked again with the configuration's terms, registration reports nothing to do.
    let wallet = env.host_wallet(0);
    let sender = NonceBook::new().wrap(env.manager.signer(wallet), a);
    let outcome = ensure_registered(
        &env.manager,
        &sender,
        a,
        &Registration {
            peer_id: registered.info.peer_id.clone(),
            models: vec![model],
            prices: vec![
                TokenPrice {
                    token: env.usdc,
                    price_per_token: TokenAmount::from_base_units(USDC_PRICE),
                },
                TokenPrice {
                    token: Address::zero(),
                    price_per_token: TokenAmount::from_base_units(ETH_PRICE),
                },
            ],
            metadata: String::new(),
            stake: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(env.nonce(a).await, sent);

    // The result stored before the restart is still served, verified against its CID.
    dial(&client, &host).await;
    let stored = fetch_verified(&client, host.peer_id(), first_job, &cid, &env.client_key)
        .await
        .expect("the restarted host serves the old result");
    assert_eq!(stored, first.text.as_bytes());

    // And it takes new jobs; greedy decoding of the same prompt gives the same result.
    let (_, second) = run_usdc_job(&env, &client, &host, 0).await;
    assert_eq!(second.done.result_cid, cid);

    shut_down(client, [host]).await;
}
