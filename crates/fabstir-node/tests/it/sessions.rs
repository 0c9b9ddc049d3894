//! Sessions served by a real host node on a real chain: many prompts on one deposit over
//! `/fabstir/session/1.0.0`, receipts cumulative across prompts, partial settlement while the
//! session goes on, the close with the newest receipt (asked by the client, or after the client
//! went silent), the deposit bounding what is streamed, and strangers refused. Money is
//! asserted to the base unit.

use std::sync::Arc;
use std::time::Duration;

use fabstir_core::auth::{SigningKey, address_of};
use fabstir_core::primitives::U256;
use fabstir_core::wire::{FinishReason, PromptInput, SessionPrompt, StreamErrorCode};
use fabstir_core::{PromptEnd, SessionEvent, SessionId, SessionSplit, SessionStatus, TokenAmount};
use fabstir_node::RunningNode;
use fabstir_p2p::{Error as P2pError, Network};
use futures::StreamExt as _;

use crate::common::{Env, MODEL, USDC_PRICE, dial, shut_down, wait_for};

/// Tokens asked for per prompt.
const PROMPT_TOKENS: u32 = 12;

/// Host 0 configured by `tune`, and a client connected to it.
async fn session_host(
    env: &Env,
    tune: impl FnOnce(&mut fabstir_node::NodeConfig),
) -> (RunningNode, Network) {
    let mut config = env.host_config(0);
    tune(&mut config);
    let host = fabstir_node::start(&config, env.host_key(0)).await.unwrap();
    let client = env.client_network().await;
    dial(&client, &host).await;
    (host, client)
}

/// Opens a USDC session with host 0 for [`MODEL`] at its price, depositing `deposit`.
async fn open_session(env: &Env, deposit: u64) -> SessionId {
    let details = env
        .chain
        .session_details(0, MODEL, USDC_PRICE, 3_600)
        .await
        .unwrap();
    let amount = TokenAmount::from_base_units(deposit);
    env.manager
        .approve(env.usdc, env.manager.payment_spender(), amount, &env.client)
        .await
        .unwrap();
    env.manager
        .open_session_with_token(&details, env.usdc, amount, &env.client)
        .await
        .unwrap()
        .session
}

/// A greedy prompt of token id `id` (the test model has no tokenizer).
fn prompt(id: u32) -> SessionPrompt {
    SessionPrompt {
        input: PromptInput::Text(id.to_string()),
        max_tokens: PROMPT_TOKENS,
        temperature_milli: 0,
        top_p_milli: 1_000,
        seed: 7,
    }
}

/// Sends `prompt` on `session` as `key` and reads it to its end.
async fn run_prompt(
    client: &Network,
    host: &RunningNode,
    session: SessionId,
    key: &SigningKey,
    prompt: SessionPrompt,
) -> fabstir_p2p::Result<(String, PromptEnd)> {
    let mut stream = client
        .open_session_stream(host.peer_id(), session, Arc::new(key.clone()), prompt)
        .await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            SessionEvent::Tokens(batch) => text.push_str(&batch.text()),
            SessionEvent::Done(end) => return Ok((text, end)),
        }
    }
    panic!("the prompt ended without its final frame");
}

/// Waits until `session` is closed on chain and returns it.
async fn closed(env: &Env, session: SessionId) -> fabstir_core::OnChainSession {
    let manager = &env.manager;
    wait_for("the session's close", move || async move {
        let s = manager.session(session).await.ok()?;
        (s.status == SessionStatus::Closed).then_some(s)
    })
    .await
}

/// What the parties hold of USDC (the host's marketplace credit included).
async fn parties(env: &Env) -> fabstir_contracts::testing::Balances {
    env.parties(env.usdc, address_of(&env.client_key), env.host_address(0))
        .await
}

/// Asserts the close of a `deposit` session paid exactly `tokens`: the host `tokens x price`
/// less the fee, the marketplace's accrued fees the fee, the client the rest.
async fn assert_settled(
    env: &Env,
    before: &fabstir_contracts::testing::Balances,
    deposit: u64,
    tokens: u64,
) {
    let fee_bps = env.manager.fee_bps().await.unwrap();
    let split = SessionSplit::of(tokens, TokenAmount::from_base_units(USDC_PRICE), fee_bps);
    let after = parties(env).await;
    let client = address_of(&env.client_key);
    let host = env.host_address(0);
    assert_eq!(
        after.of(client),
        before.of(client) - U256::from(tokens * USDC_PRICE),
        "the client pays for the receipted tokens and gets the rest of {deposit} back"
    );
    assert_eq!(after.of(host), before.of(host) + split.paid.base_units());
    // The fee accrues in the marketplace until the treasury collects it.
    let market = env.deployment.contracts.job_marketplace;
    assert_eq!(after.of(market), before.of(market) + split.fee.base_units());
    after.assert_conserved_since(before, U256::zero());
}

/// Twenty prompts on one deposit, with no transaction between them: receipts are cumulative,
/// the host settles part of the session on the way (every 40 tokens), and the client's end
/// closes it with the newest receipt: paid Σ counted tokens x price less the fee, to the base
/// unit, and the rest refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_prompts_in_one_session_settle_exactly_with_partial_settlements() {
    let env = Env::new().await;
    let (host, client) = session_host(&env, |c| c.session_settle_tokens = 40).await;
    let deposit = 400 * USDC_PRICE;
    let before = parties(&env).await;
    let session = open_session(&env, deposit).await;
    let mut counted = 0u64;
    let mut settled_mid_session = 0u64;
    for i in 0..20u32 {
        let (text, end) = run_prompt(&client, &host, session, &env.client_key, prompt(100 + i))
            .await
            .unwrap();
        assert!(!text.is_empty() && end.counted > 0, "prompt {i} answered");
        assert_eq!(end.finish, FinishReason::Length);
        counted += end.counted;
        assert_eq!(end.receipted, counted, "receipts are cumulative");
        if i == 9 {
            // The host settles in the background once 40 tokens are receipted.
            let manager = &env.manager;
            settled_mid_session = wait_for("a partial settlement", move || async move {
                let s = manager.session(session).await.ok()?;
                (s.settled_tokens > 0).then_some(s.settled_tokens)
            })
            .await;
        }
    }
    assert!(settled_mid_session >= 40 && settled_mid_session <= counted);
    let open = env.manager.session(session).await.unwrap();
    assert_eq!(
        open.status,
        SessionStatus::Open,
        "no transaction per prompt"
    );
    let ending = client
        .end_session(host.peer_id(), session, Arc::new(env.client_key.clone()))
        .await
        .unwrap();
    assert_eq!(ending.tokens, counted);
    let done = closed(&env, session).await;
    assert_eq!(done.settled_tokens, counted);
    assert_settled(&env, &before, deposit, counted).await;
    shut_down(client, [host]).await;
}

/// A client that goes silent mid-session: once it was idle for the configured time the host
/// closes the session with the newest receipt it holds, so it is paid for that and the client
/// refunded the rest. (The client's last receipt may die with it: then the host holds the one
/// the last prompt resumed from.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_silent_is_closed_with_its_newest_receipt() {
    let env = Env::new().await;
    let (host, client) =
        session_host(&env, |c| c.session_idle_close = Duration::from_secs(2)).await;
    let deposit = 100 * USDC_PRICE;
    let before = parties(&env).await;
    let session = open_session(&env, deposit).await;
    let key = &env.client_key;
    let (_, first) = run_prompt(&client, &host, session, key, prompt(200))
        .await
        .unwrap();
    let (_, second) = run_prompt(&client, &host, session, key, prompt(201))
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    let done = closed(&env, session).await;
    assert!(
        done.settled_tokens == second.receipted || done.settled_tokens == first.receipted,
        "closed with {} tokens, the client receipted {} then {}",
        done.settled_tokens,
        first.receipted,
        second.receipted
    );
    assert!(done.settled_tokens > 0);
    assert_settled(&env, &before, deposit, done.settled_tokens).await;
    host.stop().await.unwrap();
}

/// The deposit bounds what is streamed: a prompt stops when the deposit pays for no more
/// (`Deposit`), the next gets nothing, and after a top-up the session goes on, resuming from
/// the newest receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deposit_bounds_the_stream_until_a_top_up() {
    let env = Env::new().await;
    let (host, client) = session_host(&env, |_| {}).await;
    let deposit = 5 * USDC_PRICE;
    let before = parties(&env).await;
    let session = open_session(&env, deposit).await;
    let key = &env.client_key;
    let (_, first) = run_prompt(&client, &host, session, key, prompt(300))
        .await
        .unwrap();
    assert_eq!((first.counted, first.finish), (5, FinishReason::Deposit));
    let (_, empty) = run_prompt(&client, &host, session, key, prompt(301))
        .await
        .unwrap();
    assert_eq!((empty.tokens, empty.finish), (0, FinishReason::Deposit));
    let top_up = TokenAmount::from_base_units(20 * USDC_PRICE);
    env.manager
        .approve(env.usdc, env.manager.payment_spender(), top_up, &env.client)
        .await
        .unwrap();
    env.manager
        .top_up_session(session, top_up, &env.client)
        .await
        .unwrap();
    let (_, more) = run_prompt(&client, &host, session, key, prompt(302))
        .await
        .unwrap();
    assert_eq!(more.receipted, 5 + more.counted);
    assert!(more.counted > 0);
    client
        .end_session(host.peer_id(), session, Arc::new(key.clone()))
        .await
        .unwrap();
    closed(&env, session).await;
    assert_settled(&env, &before, 25 * USDC_PRICE, more.receipted).await;
    shut_down(client, [host]).await;
}

/// A stranger cannot prompt someone's session or end it, and one session streams one prompt
/// at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_and_concurrent_prompts_are_refused() {
    let env = Env::new().await;
    let (host, client) = session_host(&env, |_| {}).await;
    let session = open_session(&env, 100 * USDC_PRICE).await;
    let stranger = env.intruder_key();
    let refused = run_prompt(&client, &host, session, &stranger, prompt(400)).await;
    assert!(
        matches!(
            &refused,
            Err(P2pError::Remote {
                code: StreamErrorCode::AuthFailed,
                ..
            })
        ),
        "{refused:?}"
    );
    let ended = client
        .end_session(host.peer_id(), session, Arc::new(stranger))
        .await;
    assert!(matches!(
        ended,
        Err(P2pError::Remote {
            code: StreamErrorCode::AuthFailed,
            ..
        })
    ));
    let key = Arc::new(env.client_key.clone());
    let mut first = client
        .open_session_stream(host.peer_id(), session, key.clone(), prompt(401))
        .await
        .unwrap();
    let second = client
        .open_session_stream(host.peer_id(), session, key, prompt(402))
        .await;
    assert!(
        matches!(
            &second,
            Err(P2pError::Remote {
                code: StreamErrorCode::SessionBusy,
                ..
            })
        ),
        "{second:?}"
    );
    while let Some(event) = first.next().await {
        event.unwrap();
    }
    let open = env.manager.session(session).await.unwrap();
    assert_eq!((open.status, open.settled_tokens), (SessionStatus::Open, 0));
    shut_down(client, [host]).await;
}

/// On a chain that mines a block every 2 seconds: opening the session waits for blocks, the
/// prompts after it send no transaction at all (neither the client's nor the host's nonce
/// moves, so nothing waits for a block), and the close settles them exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_on_a_two_second_chain_send_no_transaction() {
    let env = Env::new().await;
    let (host, client) = session_host(&env, |_| {}).await;
    fabstir_contracts::anvil::set_block_time(env.manager.provider(), 2)
        .await
        .unwrap();
    let deposit = 200 * USDC_PRICE;
    let before = parties(&env).await;
    let session = open_session(&env, deposit).await;
    let me = address_of(&env.client_key);
    let nonces = (env.nonce(me).await, env.nonce(env.host_address(0)).await);
    let mut counted = 0;
    for i in 0..5 {
        let (_, end) = run_prompt(&client, &host, session, &env.client_key, prompt(500 + i))
            .await
            .unwrap();
        counted += end.counted;
    }
    assert_eq!(
        (env.nonce(me).await, env.nonce(env.host_address(0)).await),
        nonces,
        "no transaction per prompt"
    );
    client
        .end_session(host.peer_id(), session, Arc::new(env.client_key.clone()))
        .await
        .unwrap();
    let done = closed(&env, session).await;
    assert_eq!(done.settled_tokens, counted);
    assert_settled(&env, &before, deposit, counted).await;
    shut_down(client, [host]).await;
}
