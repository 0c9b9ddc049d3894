//! The [`NetworkLayer`] suite: discovery, quotes, the posted notice, token streams and session
//! prompts, as every network the SDK runs on must do them.

use async_trait::async_trait;
use fabstir_core::auth::SigningKey;
use fabstir_core::job::prompt_hash;
use fabstir_core::primitives::Address;
use std::sync::Arc;

use fabstir_core::wire::{
    ChatMessage, ChatRole, FinishReason, PromptFrame, PromptInput, QuoteRequest, RejectReason,
    SessionPrompt, StreamErrorCode,
};
use fabstir_core::{
    JobId, ModelId, NodeCapabilities, NodePeerId, PromptEnd, ProviderQuery, SessionEvent,
    SessionId, StreamEvent, TokenAmount,
};
use fabstir_sdk::{Error, NetworkLayer};
use futures::StreamExt;

/// What the network suite needs besides the layer: one honest host and a job it will serve.
#[async_trait]
pub(crate) trait NetworkFixture: Send + Sync {
    /// The layer under test (a client's view of the network).
    fn network(&self) -> &dyn NetworkLayer;
    /// What the one honest host advertises (one model, a price in [`NetworkFixture::token`]).
    fn host(&self) -> &NodeCapabilities;
    /// The payment token the host prices.
    fn token(&self) -> Address;
    /// The client's key (the job's client).
    fn client(&self) -> &SigningKey;
    /// A job of the client's that the host will stream (posted and claimed where the host
    /// needs that).
    async fn servable_job(&self) -> JobId;
    /// A session of the client's with the host whose deposit pays for `covered` counted
    /// tokens (opened on chain where the host needs that).
    async fn servable_session(&self, covered: u64) -> SessionId;
}

fn model(f: &dyn NetworkFixture) -> ModelId {
    f.host().models[0]
}

fn price(f: &dyn NetworkFixture) -> TokenAmount {
    f.host().price_for(f.token()).unwrap()
}

fn ask(f: &dyn NetworkFixture, offered: TokenAmount) -> QuoteRequest {
    QuoteRequest {
        model: model(f),
        max_tokens: 8,
        token: f.token(),
        offered_price_per_token: offered,
        prompt_hash: prompt_hash("conformance"),
        client: fabstir_core::auth::address_of(f.client()),
    }
}

/// Discovery finds the host, with what it advertises, for its model only.
pub(crate) async fn discovery_finds_the_host(f: &dyn NetworkFixture) {
    let found = f
        .network()
        .find_providers(&ProviderQuery::new(model(f), f.token()))
        .await
        .unwrap();
    let host = found
        .iter()
        .find(|n| n.capabilities.peer_id == f.host().peer_id)
        .expect("the host is found");
    assert_eq!(host.capabilities.eth_address, f.host().eth_address);
    assert_eq!(host.capabilities.price_for(f.token()), Some(price(f)));
    assert!(host.capabilities.serves(&model(f)));
    let other = ProviderQuery::new(ModelId::from_name("no-such-model"), f.token());
    assert!(f.network().find_providers(&other).await.unwrap().is_empty());
}

/// A quote at the host's price names the host and the asked terms; an offer below the price
/// is declined as too low; an unknown peer is an error.
pub(crate) async fn quotes_follow_the_price(f: &dyn NetworkFixture) {
    let peer = &f.host().peer_id;
    let quote = f.network().quote(peer, ask(f, price(f))).await.unwrap();
    assert_eq!(quote.host, f.host().eth_address);
    assert_eq!(quote.price_per_token, price(f));
    assert_eq!(quote.model, model(f));
    assert_eq!(quote.token, f.token());
    assert_eq!(quote.max_tokens, 8);
    let low = price(f)
        .checked_sub(TokenAmount::from_base_units(1u64))
        .unwrap();
    match f.network().quote(peer, ask(f, low)).await {
        Err(Error::HostDeclined { host, reason, .. }) => {
            assert_eq!(&host, peer);
            assert_eq!(reason, RejectReason::PriceTooLow);
        }
        other => panic!("an offer below the price must be declined, got {other:?}"),
    }
    let mut bytes = vec![0x00, 36, 8, 1, 18, 32];
    bytes.extend([0x5a; 32]);
    let stranger = NodePeerId::from_bytes(bytes).unwrap();
    assert!(
        f.network()
            .quote(&stranger, ask(f, price(f)))
            .await
            .is_err()
    );
}

/// A served job streams consecutive tokens and ends with a final frame whose CID and count
/// are those of the text streamed.
pub(crate) async fn streams_end_with_their_cid(f: &dyn NetworkFixture) {
    let job = f.servable_job().await;
    let prompt = PromptFrame {
        prompt: "conformance".into(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    };
    let mut stream = f
        .network()
        .open_stream(
            &f.host().peer_id,
            job,
            std::sync::Arc::new(f.client().clone()),
            prompt,
        )
        .await
        .unwrap();
    let (mut text, mut next_index) = (String::new(), 0u64);
    let done = loop {
        match stream
            .next()
            .await
            .expect("the stream ends with Done")
            .unwrap()
        {
            StreamEvent::Tokens(batch) => {
                assert_eq!(batch.first_index, next_index, "tokens arrive in order");
                next_index += batch.tokens.len() as u64;
                text.push_str(&batch.text());
            }
            StreamEvent::Done(done) => break done,
        }
    };
    assert!(next_index > 0, "some tokens were streamed");
    assert_eq!(done.tokens_used, next_index);
    assert_eq!(done.result_cid, fabstir_storage::cid_of(text.as_bytes()));
    assert!(stream.next().await.is_none(), "nothing follows Done");
}

/// Sends `text` on `session` as `key` and reads the prompt to its end.
async fn session_prompt(
    f: &dyn NetworkFixture,
    session: SessionId,
    key: &SigningKey,
    text: &str,
) -> Result<(String, PromptEnd), Error> {
    let prompt = SessionPrompt {
        input: PromptInput::Chat(vec![ChatMessage::new(ChatRole::User, text)]),
        max_tokens: 16,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    };
    let mut events = f
        .network()
        .open_session_stream(&f.host().peer_id, session, Arc::new(key.clone()), prompt)
        .await?;
    let mut text = String::new();
    let mut next_index = 0;
    while let Some(event) = events.next().await {
        match event? {
            SessionEvent::Tokens(batch) => {
                assert_eq!(batch.first_index, next_index, "a prompt's indices from 0");
                next_index += batch.tokens.len() as u64;
                text.push_str(&batch.text());
            }
            SessionEvent::Done(end) => {
                assert!(events.next().await.is_none(), "nothing follows Done");
                return Ok((text, end));
            }
        }
    }
    panic!("the prompt ended without its end");
}

/// Prompts on a session: the host's 5 tokens each, receipts cumulative over the session,
/// the deposit bounding a prompt (`Deposit`, then nothing), and the client's end closing it
/// with everything receipted.
pub(crate) async fn session_prompts_receipt_cumulatively(f: &dyn NetworkFixture) {
    let session = f.servable_session(8).await;
    let (text, first) = session_prompt(f, session, f.client(), "hello")
        .await
        .unwrap();
    assert!(!text.is_empty());
    assert_eq!(
        (first.tokens, first.counted, first.receipted, first.finish),
        (5, 5, 5, FinishReason::Stop)
    );
    let (_, second) = session_prompt(f, session, f.client(), "again")
        .await
        .unwrap();
    assert_eq!(
        (second.counted, second.receipted, second.finish),
        (3, 8, FinishReason::Deposit),
        "the deposit pays for 3 more"
    );
    let (_, empty) = session_prompt(f, session, f.client(), "more")
        .await
        .unwrap();
    assert_eq!((empty.tokens, empty.receipted), (0, 8));
    let tokens = f
        .network()
        .end_session(&f.host().peer_id, session, Arc::new(f.client().clone()))
        .await
        .unwrap();
    assert_eq!(tokens, 8);
}

/// Only the session's client may prompt it.
pub(crate) async fn strangers_cannot_prompt_a_session(f: &dyn NetworkFixture) {
    let session = f.servable_session(100).await;
    let stranger = SigningKey::from_bytes(&[0x5au8; 32].into()).unwrap();
    let refused = session_prompt(f, session, &stranger, "mine now").await;
    assert!(
        matches!(
            &refused,
            Err(Error::P2p(fabstir_p2p::Error::Remote {
                code: StreamErrorCode::AuthFailed,
                ..
            }))
        ),
        "{refused:?}"
    );
}

/// Runs every check of the suite on one fixture.
pub(crate) async fn run_all(f: &dyn NetworkFixture) {
    discovery_finds_the_host(f).await;
    quotes_follow_the_price(f).await;
    streams_end_with_their_cid(f).await;
    session_prompts_receipt_cumulatively(f).await;
    strangers_cannot_prompt_a_session(f).await;
}
