//! Unit tests of the SDK's own logic over the in-memory chain and network: the lifecycle's
//! states, failover with escrow recovery, result verification and the errors raised before
//! anything is spent.

use std::sync::Arc;
use std::time::Duration;

use ethers::signers::{LocalWallet, Signer as _};
use fabstir_contracts::JobStatus;
use fabstir_core::primitives::Address;
use fabstir_core::{JobId, JobState, ModelId, PaymentToken, TokenAmount};

use crate::{SdkConfig, SdkEvent};

use crate::memory::{HostBehaviour, InMemoryChain, InMemoryNetwork, ScriptedHost};
use crate::{ChainLayer, Error, FabstirSdk, JobRequest};

const MODEL: &str = "stories";

fn usdc() -> PaymentToken {
    PaymentToken::erc20(Address::repeat_byte(0xcc), "USDC", 6)
}

fn treasury() -> Address {
    Address::repeat_byte(0xee)
}

fn wallet() -> LocalWallet {
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
        .parse::<LocalWallet>()
        .unwrap()
        .with_chain_id(31_337u64)
}

struct Fixture {
    sdk: FabstirSdk,
    chain: Arc<InMemoryChain>,
    network: Arc<InMemoryNetwork>,
}

fn fixture(behaviours: &[HostBehaviour]) -> Fixture {
    let chain = Arc::new(InMemoryChain::new(31_337, vec![usdc()], treasury()));
    chain.mint(
        wallet().address(),
        usdc().address(),
        TokenAmount::from_base_units(1_000_000u64),
    );
    let hosts = behaviours
        .iter()
        .enumerate()
        .map(|(i, b)| {
            ScriptedHost::new(
                i as u8 + 1,
                ModelId::from_name(MODEL),
                usdc().address(),
                TokenAmount::from_base_units(100u64),
                *b,
            )
        })
        .collect();
    let network = Arc::new(InMemoryNetwork::new(chain.clone(), hosts));
    let mut config = SdkConfig::default();
    config.timeouts.claim = Duration::from_millis(300);
    config.timeouts.stream_stall = Duration::from_millis(300);
    config.timeouts.job_deadline = Duration::from_secs(60);
    config.poll_interval = Duration::from_millis(10);
    let sdk = FabstirSdk::with_layers(config, chain.clone(), network.clone());
    sdk.set_signer(wallet()).unwrap();
    Fixture {
        sdk,
        chain,
        network,
    }
}

/// Submits [`request`] and waits for its result.
async fn run(f: &Fixture) -> crate::Result<crate::JobResult> {
    f.sdk.submit_job(request()).await.unwrap().result().await
}

fn request() -> JobRequest {
    JobRequest::new(MODEL, "Once upon a time").max_tokens(10)
}

fn client_balance(f: &Fixture) -> TokenAmount {
    f.chain.balance_of(wallet().address(), usdc().address())
}

#[tokio::test]
async fn a_job_walks_the_whole_lifecycle_and_pays_exactly() {
    let f = fixture(&[HostBehaviour::Honest]);
    let mut events = f.sdk.events();
    let mut handle = f.sdk.submit_job(request()).await.unwrap();
    let mut streamed = String::new();
    while let Some(text) = handle.next_tokens().await {
        streamed.push_str(&text);
    }
    let result = handle.result().await.unwrap();
    assert_eq!(streamed, "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(result.text, streamed);
    assert_eq!(result.tokens_used, 5);
    // 5 tokens x 100 = 500; 1% fee = 5; escrow was 10 x 100 = 1000, refund 500.
    assert_eq!(result.paid, TokenAmount::from_base_units(495u64));
    assert_eq!(result.fee, TokenAmount::from_base_units(5u64));
    assert_eq!(result.refund, TokenAmount::from_base_units(500u64));
    assert_eq!(client_balance(&f), TokenAmount::from_base_units(999_500u64));
    assert_eq!(f.chain.balance_of(treasury(), usdc().address()), result.fee);

    let mut states = vec![JobState::Negotiating];
    while let Ok(event) = events.try_recv() {
        if let SdkEvent::JobStateChanged { to, .. } = event {
            states.push(to);
        }
    }
    use JobState::*;
    assert_eq!(
        states,
        [
            Negotiating,
            Posted,
            Claimed,
            Processing,
            Streaming,
            Completed,
            PaymentReleased
        ]
    );
    let status = f.sdk.job_status(result.job).await.unwrap();
    assert_eq!(status.state, PaymentReleased);
    assert_eq!(status.result_cid, Some(result.cid));
}

#[tokio::test]
async fn a_host_that_never_claims_is_cancelled_and_replaced() {
    let f = fixture(&[HostBehaviour::NeverClaims, HostBehaviour::Honest]);
    let result = run(&f).await.unwrap();
    assert_eq!(result.attempts, 2);
    assert_eq!(result.failed_jobs, vec![JobId(1)]);
    f.sdk.wait_recoveries().await;
    assert_eq!(
        f.chain.job(JobId(1)).await.unwrap().status,
        JobStatus::Cancelled
    );
    let spent = result.paid.checked_add(result.fee).unwrap();
    assert_eq!(
        client_balance(&f),
        TokenAmount::from_base_units(1_000_000u64)
            .checked_sub(spent)
            .unwrap(),
        "the first escrow came back in full"
    );
    assert_eq!(f.chain.escrowed(usdc().address()), TokenAmount::ZERO);
    let first_host = &f.network.history(
        &crate::memory::ScriptedHost::new(
            1,
            ModelId::from_name(MODEL),
            usdc().address(),
            TokenAmount::ZERO,
            HostBehaviour::Honest,
        )
        .capabilities
        .peer_id,
    );
    assert_eq!(first_host.failures, 1);
}

#[tokio::test]
async fn a_stream_that_breaks_fails_over_and_the_escrow_expires_back() {
    let f = fixture(&[HostBehaviour::DiesAfter(2), HostBehaviour::Honest]);
    let mut events = f.sdk.events();
    let mut handle = f.sdk.submit_job(request()).await.unwrap();
    let mut streamed = String::new();
    while let Some(text) = handle.next_tokens().await {
        streamed.push_str(&text);
    }
    let result = handle.result().await.unwrap();
    assert_eq!(result.attempts, 2);
    assert_eq!(result.text, "tok0 tok1 tok2 tok3 tok4 ");
    assert!(
        streamed.ends_with(&result.text),
        "the new host's text follows"
    );
    let mut discarded = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SdkEvent::TokensDiscarded { job, tokens, .. } = event {
            discarded.push((job, tokens));
        }
    }
    assert_eq!(
        discarded,
        vec![(JobId(1), 2)],
        "the first host's two tokens are discarded"
    );
    assert_eq!(result.tokens_receipted, 5);
    assert_eq!(result.tokens_used, 5);
    // The broken job is claimed: the client asks to close it, and it comes back once the
    // close window passes.
    assert!(
        f.chain.job(JobId(1)).await.unwrap().status.is_claimed(),
        "claimed or closing"
    );
    f.chain.advance(Duration::from_secs(61));
    f.sdk.wait_recoveries().await;
    assert_eq!(
        f.chain.job(JobId(1)).await.unwrap().status,
        JobStatus::Expired
    );
    assert_eq!(f.chain.escrowed(usdc().address()), TokenAmount::ZERO);
    let spent = result.paid.checked_add(result.fee).unwrap();
    assert_eq!(
        client_balance(&f),
        TokenAmount::from_base_units(1_000_000u64)
            .checked_sub(spent)
            .unwrap()
    );
}

#[tokio::test]
async fn a_result_whose_cid_does_not_match_is_reported() {
    let f = fixture(&[HostBehaviour::WrongCid, HostBehaviour::Honest]);
    let err = run(&f).await.unwrap_err();
    assert!(
        matches!(err, Error::ResultMismatch { job: JobId(1), .. }),
        "{err}"
    );
}

#[tokio::test]
async fn nothing_is_spent_without_a_signer_providers_or_funds() {
    let f = fixture(&[HostBehaviour::Honest]);
    f.sdk.clear_signer();
    assert!(matches!(
        f.sdk.submit_job(request()).await,
        Err(Error::NoSigner)
    ));

    f.sdk.set_signer(wallet()).unwrap();
    let unknown = JobRequest::new("no-such-model", "hi");
    let err = f
        .sdk
        .submit_job(unknown)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoProviders(_)), "{err}");

    let mut big = request();
    big.max_tokens = 100_000;
    let err = f
        .sdk
        .submit_job(big)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insufficient USDC"), "{err}");
    assert_eq!(
        client_balance(&f),
        TokenAmount::from_base_units(1_000_000u64)
    );
    assert!(f.chain.job(JobId(1)).await.is_err(), "no job was posted");

    let wrong_chain = wallet().with_chain_id(5u64);
    assert!(matches!(
        f.sdk.set_signer(wrong_chain),
        Err(Error::WrongChain {
            signer: 5,
            sdk: 31_337
        })
    ));
}

#[tokio::test]
async fn the_in_memory_network_keeps_no_pool() {
    let f = fixture(&[HostBehaviour::Honest]);
    assert_eq!(f.sdk.pool_stats(), None);
}

/// A host quotes above the price it signed (and above the caller's maximum): the quote is
/// refused before any transaction, the next host serves the job, and nothing was escrowed for
/// the first.
#[tokio::test]
async fn a_quote_above_the_signed_price_or_the_callers_maximum_is_refused_before_paying() {
    let f = fixture(&[HostBehaviour::Overcharges, HostBehaviour::Honest]);
    let mut events = f.sdk.events();
    let result = run(&f).await.unwrap();
    assert_eq!(result.attempts, 2);
    assert!(
        result.failed_jobs.is_empty(),
        "no job was posted for the first host"
    );
    assert_eq!(
        result.job,
        JobId(1),
        "the only job posted is the second host's"
    );
    let mut refused = None;
    while let Ok(event) = events.try_recv() {
        if let SdkEvent::Failover {
            reason, failed_job, ..
        } = event
        {
            assert_eq!(failed_job, None);
            refused = Some(reason);
        }
    }
    let reason = refused.expect("a failover");
    assert!(reason.contains("bad quote"), "{reason}");

    // With only the overcharging host, the job fails and nothing is spent.
    let f = fixture(&[HostBehaviour::Overcharges]);
    let err = run(&f).await.unwrap_err();
    assert!(err.to_string().contains("bad quote"), "{err}");
    assert_eq!(
        client_balance(&f),
        TokenAmount::from_base_units(1_000_000u64)
    );
    assert!(f.chain.job(JobId(1)).await.is_err(), "nothing was posted");
}

#[test]
fn quotes_are_checked_field_by_field() {
    use fabstir_core::wire::{Quote, QuoteRequest};
    let host = ScriptedHost::new(
        1,
        ModelId::from_name(MODEL),
        usdc().address(),
        TokenAmount::from_base_units(100u64),
        HostBehaviour::Honest,
    );
    let caps = host.capabilities.clone();
    let ask = QuoteRequest {
        model: ModelId::from_name(MODEL),
        max_tokens: 10,
        token: usdc().address(),
        offered_price_per_token: TokenAmount::from_base_units(150u64),
        prompt_hash: Default::default(),
        client: Address::repeat_byte(1),
    };
    let good = Quote {
        host: caps.eth_address,
        model: ask.model,
        price_per_token: TokenAmount::from_base_units(100u64),
        token: ask.token,
        max_tokens: 10,
        valid_until: u64::MAX,
        credit_window: 64,
    };
    // At most 1,024 tokens ahead, and at most 6,400 base units (64 tokens at 100).
    let limit = crate::lifecycle::CreditLimit {
        tokens: 1024,
        value: Some(TokenAmount::from_base_units(6_400u64)),
    };
    let check = |q: &Quote| crate::lifecycle::check_quote(q, &ask, &caps, limit);
    assert_eq!(check(&good), Ok(()));
    let bad = [
        Quote {
            model: ModelId::from_name("other"),
            ..good.clone()
        },
        Quote {
            token: Address::repeat_byte(9),
            ..good.clone()
        },
        Quote {
            max_tokens: 9,
            ..good.clone()
        },
        Quote {
            host: Address::repeat_byte(9),
            ..good.clone()
        },
        Quote {
            price_per_token: TokenAmount::from_base_units(151u64),
            ..good.clone()
        },
        Quote {
            price_per_token: TokenAmount::from_base_units(120u64),
            ..good.clone()
        },
        Quote {
            credit_window: 2048,
            ..good.clone()
        },
        // Within the token cap, but 65 x 100 is above the value the client risks.
        Quote {
            credit_window: 65,
            ..good.clone()
        },
    ];
    for quote in bad {
        assert!(check(&quote).is_err(), "{quote:?}");
    }
}
