//! Sessions through the SDK against real host nodes on a real anvil: a chat of three prompts
//! on one deposit costing exactly what was receipted, and a host killed mid-session, replaced
//! by a new session with another host that gets the whole conversation, with the failed
//! session's deposit recovered.

use std::time::Duration;

use fabstir_cli::devnet::{Devnet, DevnetConfig};
use fabstir_core::wire::ChatRole;
use fabstir_core::{SessionStatus, TokenAmount};
use fabstir_sdk::{SdkEvent, SessionRequest};

use crate::common::{chain_balance, client, model_of};

/// A session request for the devnet's model, depositing 0.05 USDC, 12 tokens per prompt.
fn request(devnet: &Devnet) -> SessionRequest {
    SessionRequest::new(model_of(devnet), TokenAmount::from_base_units(50_000u64)).max_tokens(12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_of_three_prompts_costs_exactly_what_was_receipted() {
    let devnet = crate::common::devnet(1).await;
    let sdk = devnet.client_sdk().await.unwrap();
    let me = client(&devnet);
    let before = chain_balance(&devnet, me, "USDC").await;
    let mut session = sdk.open_session(request(&devnet)).await.unwrap();
    let mut streamed = String::new();
    let mut counted = 0;
    for line in ["Hello there.", "Who art thou?", "Farewell."] {
        let reply = session
            .chat_with(line, |piece| streamed.push_str(piece))
            .await
            .unwrap();
        assert!(
            reply.counted > 0 && !reply.text.is_empty(),
            "{line} answered"
        );
        assert_eq!(reply.failovers, 0);
        counted += reply.counted;
        assert_eq!(
            session.tokens_receipted(),
            counted,
            "receipts are cumulative"
        );
    }
    assert_eq!(session.messages().len(), 6);
    assert_eq!(session.messages()[1].role, ChatRole::Assistant);
    let price = session.price_per_token();
    assert_eq!(
        session.spent(),
        TokenAmount(price.base_units() * u64::from(u32::try_from(counted).unwrap()))
    );
    let id = session.id();
    let listed = sdk.sessions().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|s| s.id == id && s.status == SessionStatus::Open),
        "{listed:?}"
    );
    // Closed by id, as `fabstir sessions close ID` does (the handle gone, as after a restart).
    drop(session);
    let closed = sdk.close_session(id).await.unwrap();
    assert!(closed.cooperative, "the host closed the session at once");
    assert_eq!((closed.session, closed.tokens), (id, counted));
    let on_chain = sdk.chain().session(id).await.unwrap();
    assert_eq!(
        (on_chain.status, on_chain.settled_tokens),
        (SessionStatus::Closed, counted)
    );
    // One deposit, three prompts, no transaction per prompt: the client paid exactly the
    // receipted tokens (the deposit's rest came back at the close).
    let after = chain_balance(&devnet, me, "USDC").await;
    assert_eq!(before.checked_sub(after).unwrap(), closed.cost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_session_fails_over_with_the_conversation() {
    let mut config = DevnetConfig::new(&fabstir_e2e::workspace_root());
    config.hosts = 2;
    config.token_delay = Some(Duration::from_millis(30));
    config.stream_stall = Duration::from_secs(2);
    let mut devnet = Devnet::start(config).await.unwrap();
    let sdk = devnet.client_sdk().await.unwrap();
    let me = client(&devnet);
    let before = chain_balance(&devnet, me, "USDC").await;
    let mut events = sdk.events();
    let mut session = sdk.open_session(request(&devnet)).await.unwrap();
    let first = session.chat("Good morrow.").await.unwrap();
    let failed = session.id();
    let serving = session.host().clone();
    let index = devnet
        .nodes
        .iter()
        .position(|n| {
            n.as_ref().is_some_and(|n| {
                fabstir_p2p::node_peer_id(&n.peer_id()).ok() == Some(serving.clone())
            })
        })
        .unwrap();

    // The second prompt starts on the first host; the host dies at its first token.
    let chat = tokio::spawn(async move {
        let reply = session.chat("What news?").await;
        (session, reply)
    });
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
            Ok(Ok(SdkEvent::SessionTokens { prompt: 2, .. })) => break,
            Ok(Ok(_)) => {}
            other => panic!("no token of the second prompt: {other:?}"),
        }
    }
    devnet.stop_node(index).await.unwrap();
    let (session, reply) = chat.await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(reply.failovers, 1);
    assert_ne!(reply.session, failed, "a new session with another host");
    assert_ne!(session.host(), &serving);
    assert!(!reply.text.is_empty());
    // The conversation went on: both exchanges, the second answered by the new host.
    let messages = session.messages();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[1].content, first.text.trim());
    assert_eq!(messages[3].content, reply.text.trim());

    let closed = session.close().await.unwrap();
    assert!(closed.cooperative);
    // The failed session's deposit comes back through the challenge close and expiry: its
    // host died before settling anything.
    tokio::time::timeout(Duration::from_secs(90), sdk.wait_recoveries())
        .await
        .expect("the failed session's deposit is recovered");
    let old = sdk.chain().session(failed).await.unwrap();
    assert_eq!(
        (old.status, old.settled_tokens),
        (SessionStatus::Expired, 0)
    );
    // No funds lost: the client paid exactly the new session's receipted tokens.
    let after = chain_balance(&devnet, me, "USDC").await;
    assert_eq!(before.checked_sub(after).unwrap(), closed.cost);
}
