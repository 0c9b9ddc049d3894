//! Tests of `host`.

use super::*;

fn host() -> TestHostBuilder {
    let key = SigningKey::from_bytes(&[1; 32].into()).unwrap();
    TestHost::builder(key, PeerId::random()).models(vec![ModelId::from_name("m")])
}

fn quote(model: &str) -> NegotiationRequest {
    NegotiationRequest::Quote(fabstir_core::wire::QuoteRequest {
        model: ModelId::from_name(model),
        max_tokens: 10,
        token: Address::zero(),
        offered_price_per_token: TokenAmount::from_base_units(1u64),
        prompt_hash: Default::default(),
        client: Address::zero(),
    })
}

#[tokio::test]
async fn a_scripted_host_signs_what_it_streamed() {
    let host = host().script(Script::Tokens(3)).build();
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let prompt = PromptFrame {
        prompt: String::new(),
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
    };
    let done = host
        .run(JobId(7), Address::zero(), prompt, StreamSink::new(tx))
        .await
        .unwrap();
    assert_eq!(done.tokens_used, 3);
    assert_eq!(host.produced(), 3);
    assert_eq!(rx.recv().await, Some(script::token(0)));
    let message = auth::result_message(TEST_CHAIN_ID, JobId(7), &done.result_cid, 3);
    auth::verify_signer(&message, &done.signature, host.address()).unwrap();
}

#[tokio::test]
async fn a_wrapping_host_crashes_once_after_its_first_quote() {
    let armed = Arc::new(AtomicBool::new(true));
    let crashes = Arc::new(AtomicU64::new(0));
    let counter = crashes.clone();
    let inner: Arc<dyn HostService> = Arc::new(host().build());
    let crashing = TestHost::wrapping(inner.clone())
        .fault(Fault::CrashAfterQuote {
            armed,
            crash: Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        })
        .build();
    assert_eq!(crashing.address(), inner.address());
    let peer = PeerId::random();
    // A refusal is not a quote: no crash yet.
    let refused = crashing.job(peer, quote("other")).await;
    assert!(matches!(refused, NegotiationResponse::Rejected { .. }));
    assert_eq!(crashes.load(Ordering::SeqCst), 0);
    for _ in 0..3 {
        let answer = crashing.job(peer, quote("m")).await;
        assert!(matches!(answer, NegotiationResponse::Quote(_)));
    }
    assert_eq!(crashes.load(Ordering::SeqCst), 1);
}
