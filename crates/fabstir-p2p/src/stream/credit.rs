//! The host's credit window on a stream: it keeps the transcript of what it delivered, checks
//! each receipt the client sends (newer than the last, counting no more than was delivered,
//! the host's own transcript at that count, signed by the job's client for this chain and
//! marketplace), and lets tokens out only while fewer than the window are unreceipted. So the
//! most either side can lose is one window.
//!
//! The window is sized from the stream itself: each accepted receipt measures the round trip
//! (from the delivery of the token it covers to its arrival) and the token rate; the window is
//! twice what is in flight at that rate over that round trip, plus two receipt intervals, within
//! the quoted window (the cap the client accepted) and at least two receipt intervals. A
//! throttled stream measures a rate of `window / rtt`, so its window doubles until the stream
//! runs at the producer's rate or reaches the cap; the host risks no more than the link needs.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fabstir_core::JobId;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt, Transcript, receipt_interval};

/// A receipt that matches what was delivered, and who signed it.
pub(crate) struct Checked {
    /// Its place among the unreceipted deliveries.
    position: usize,
    /// The EIP-712 digest its signature is over.
    pub(crate) digest: H256,
    /// Who ECDSA recovers from the signature, if it is one.
    signer: Option<Address>,
    /// The job's client.
    client: Address,
}

impl Checked {
    /// Whether the client's own key signed it.
    pub(crate) fn by_client(&self) -> bool {
        self.signer == Some(self.client)
    }

    /// Why a receipt whose signature is not the client's is refused.
    pub(crate) fn wrong_signer(&self) -> String {
        match self.signer {
            Some(signer) => format!("receipt signed by {signer:#x}, not the client"),
            None => "receipt signature: neither ECDSA nor accepted by the client's wallet".into(),
        }
    }
}

/// The receipts of one job's stream.
pub(crate) struct Credit {
    job: JobId,
    client: Address,
    domain: ReceiptDomain,
    /// The quoted window: the most ever unreceipted.
    cap: u64,
    /// The least the window shrinks to: two receipt intervals.
    floor: u64,
    /// The window now.
    window: u64,
    transcript: Transcript,
    /// `(counted, hash, when)` after each delivered token not yet covered by a receipt.
    unreceipted: VecDeque<(u64, H256, Instant)>,
    newest: Option<SignedReceipt>,
    /// When the first token went out.
    started: Option<Instant>,
    /// The smoothed round trip from a token's delivery to the receipt covering it.
    rtt: Option<Duration>,
    /// The most counted tokens ever delivered (what a session's deposit pays for).
    limit: u64,
}

impl Credit {
    /// A stream of `job` for `client`, whose transcript so far is `transcript` (a job's
    /// starts from its prompt hash, a session's from its newest receipt and the prompt), with
    /// `window` tokens of credit.
    pub(crate) fn new(
        job: JobId,
        client: Address,
        transcript: Transcript,
        domain: ReceiptDomain,
        window: u32,
    ) -> Self {
        let cap = u64::from(window.max(1));
        let floor = (2 * u64::from(receipt_interval(window))).min(cap);
        Self {
            job,
            client,
            domain,
            cap,
            floor,
            window: cap,
            transcript,
            unreceipted: VecDeque::new(),
            newest: None,
            started: None,
            rtt: None,
            limit: u64::MAX,
        }
    }

    /// Continues from `receipt`, the newest the host held before this stream (a session's):
    /// only newer receipts are accepted, and it is what is settled if none comes.
    pub(crate) fn resumed_from(mut self, receipt: Option<SignedReceipt>) -> Self {
        self.newest = receipt;
        self
    }

    /// Delivers no more than `limit` counted tokens in all.
    pub(crate) fn limited_to(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Whether the limit is reached: no receipt makes room for another counted token.
    pub(crate) fn exhausted(&self) -> bool {
        self.counted() >= self.limit
    }

    /// Records a token written to the client.
    pub(crate) fn delivered(&mut self, id: u32, text: &str) {
        self.delivered_at(id, text, Instant::now());
    }

    fn delivered_at(&mut self, id: u32, text: &str, now: Instant) {
        self.started.get_or_insert(now);
        self.transcript.push(id, text);
        self.unreceipted
            .push_back((self.transcript.counted(), self.transcript.hash(), now));
    }

    /// The job's client: whose receipts these must be.
    pub(crate) fn client(&self) -> Address {
        self.client
    }

    /// The window now, in counted tokens.
    pub(crate) fn window(&self) -> u64 {
        self.window
    }

    /// The smoothed round trip, once a receipt measured it.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Resizes the window after a receipt covering a token delivered at `sent`.
    fn measure(&mut self, sent: Instant, now: Instant) {
        let sample = now.saturating_duration_since(sent);
        let rtt = match self.rtt {
            // An exponentially weighted average, weight 1/4 for the new sample.
            Some(old) => (old * 3 + sample) / 4,
            None => sample,
        };
        self.rtt = Some(rtt);
        let elapsed = self
            .started
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        if elapsed.is_zero() {
            return;
        }
        let rate = self.counted() as f64 / elapsed.as_secs_f64();
        let in_flight = (rate * rtt.as_secs_f64()).ceil() as u64;
        let wanted = in_flight.saturating_mul(2).saturating_add(self.floor);
        self.window = wanted.clamp(self.floor, self.cap);
    }

    /// Counted tokens covered by the newest receipt.
    pub(crate) fn receipted(&self) -> u64 {
        self.newest.as_ref().map_or(0, |r| r.tokens)
    }

    /// Counted tokens delivered.
    pub(crate) fn counted(&self) -> u64 {
        self.transcript.counted()
    }

    /// Whether another token may go out: fewer than the window are unreceipted, and fewer
    /// than the limit delivered.
    pub(crate) fn has_room(&self) -> bool {
        self.counted() - self.receipted() < self.window && !self.exhausted()
    }

    /// Whether every counted token delivered is receipted.
    pub(crate) fn settled_up(&self) -> bool {
        self.counted() == self.receipted()
    }

    /// Checks a receipt against what was delivered: newer than the last, counting no more than
    /// was delivered, the host's own transcript at that count. Says who signed it; a refused
    /// one changes nothing and says why.
    pub(crate) fn check(&self, receipt: &SignedReceipt) -> Result<Checked, String> {
        if receipt.tokens <= self.receipted() && self.newest.is_some() {
            return Err(format!(
                "a receipt for {} tokens after one for {}",
                receipt.tokens,
                self.receipted()
            ));
        }
        if receipt.tokens > self.counted() {
            return Err(format!(
                "a receipt for {} tokens, {} delivered",
                receipt.tokens,
                self.counted()
            ));
        }
        let position = self
            .unreceipted
            .iter()
            .position(|&(counted, hash, _)| counted == receipt.tokens && hash == receipt.transcript)
            .ok_or_else(|| "the receipt's transcript is not what was delivered".to_owned())?;
        let digest = receipt.receipt(self.job).digest(&self.domain);
        let signer = fabstir_core::auth::recover_digest(digest, &receipt.signature).ok();
        Ok(Checked {
            position,
            digest,
            signer,
            client: self.client,
        })
    }

    /// Keeps a receipt [`Credit::check`] passed, its signature now known to be the client's
    /// (by ECDSA, or accepted by the client's wallet).
    pub(crate) fn keep(&mut self, receipt: SignedReceipt, checked: Checked) {
        self.keep_at(receipt, checked, Instant::now());
    }

    fn keep_at(&mut self, receipt: SignedReceipt, checked: Checked, now: Instant) {
        let sent = self.unreceipted[checked.position].2;
        self.unreceipted.drain(..=checked.position);
        self.newest = Some(receipt);
        self.measure(sent, now);
    }

    /// Checks and keeps a receipt signed by the client's own key (no wallet to ask).
    #[cfg(test)]
    fn accept(&mut self, receipt: SignedReceipt) -> Result<(), String> {
        self.accept_at(receipt, Instant::now())
    }

    #[cfg(test)]
    fn accept_at(&mut self, receipt: SignedReceipt, now: Instant) -> Result<(), String> {
        let checked = self.check(&receipt)?;
        if !checked.by_client() {
            return Err(checked.wrong_signer());
        }
        self.keep_at(receipt, checked, now);
        Ok(())
    }

    /// The newest accepted receipt, what the host settles with.
    pub(crate) fn newest(self) -> Option<SignedReceipt> {
        self.newest
    }
}

#[cfg(test)]
mod tests {
    use fabstir_core::auth::{SigningKey, address_of};

    use super::*;

    fn domain() -> ReceiptDomain {
        ReceiptDomain {
            chain_id: 5,
            marketplace: Address::repeat_byte(7),
        }
    }

    fn signed(t: &Transcript, key: &SigningKey, domain: &ReceiptDomain) -> SignedReceipt {
        let r = t.receipt(JobId(1));
        SignedReceipt {
            tokens: r.tokens,
            transcript: r.transcript,
            signature: r.sign(domain, key).unwrap().to_vec(),
        }
    }

    #[test]
    fn receipts_are_checked_and_bound_the_window() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let prompt = H256::repeat_byte(3);
        let transcript = Transcript::new(JobId(1), prompt);
        let mut credit = Credit::new(JobId(1), address_of(&key), transcript, domain(), 2);
        let mut client = Transcript::new(JobId(1), prompt);
        for (id, text) in [(1, "a"), (2, "")] {
            credit.delivered(id, text);
            client.push(id, text);
        }
        assert!(credit.has_room(), "one counted token of two");
        credit.delivered(3, "b");
        client.push(3, "b");
        assert!(!credit.has_room(), "the window is full");

        // Forgeries change nothing.
        let stranger = SigningKey::from_slice(&[8u8; 32]).unwrap();
        assert!(
            credit
                .accept(signed(&client, &stranger, &domain()))
                .is_err()
        );
        let other_chain = ReceiptDomain {
            chain_id: 6,
            ..domain()
        };
        assert!(credit.accept(signed(&client, &key, &other_chain)).is_err());
        let mut padded = client;
        padded.push(4, "c");
        assert!(
            credit.accept(signed(&padded, &key, &domain())).is_err(),
            "counts an undelivered token"
        );
        let mut tampered = signed(&client, &key, &domain());
        tampered.transcript = H256::repeat_byte(9);
        assert!(credit.accept(tampered).is_err());
        assert_eq!(credit.receipted(), 0);

        credit.accept(signed(&client, &key, &domain())).unwrap();
        assert_eq!(credit.receipted(), 2);
        assert!(credit.settled_up() && credit.has_room());
        // A replayed, lower or equal receipt is refused.
        assert!(credit.accept(signed(&client, &key, &domain())).is_err());
        assert_eq!(credit.newest().unwrap().tokens, 2);
    }

    /// Streams `tokens` counted tokens at `rate` per second with receipts arriving `rtt`
    /// after the token they cover, one every `every` tokens: returns the window after.
    fn window_after(cap: u32, rate: f64, rtt: Duration, tokens: u32) -> (u64, Duration) {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let prompt = H256::repeat_byte(3);
        let transcript = Transcript::new(JobId(1), prompt);
        let mut credit = Credit::new(JobId(1), address_of(&key), transcript, domain(), cap);
        let mut client = Transcript::new(JobId(1), prompt);
        let every = receipt_interval(cap);
        let start = Instant::now();
        let at = |i: u32| start + Duration::from_secs_f64(f64::from(i) / rate);
        for i in 1..=tokens {
            credit.delivered_at(i, "x", at(i));
            client.push(i, "x");
            if i % every == 0 {
                credit
                    .accept_at(signed(&client, &key, &domain()), at(i) + rtt)
                    .unwrap();
            }
        }
        (credit.window(), credit.rtt().unwrap())
    }

    #[test]
    fn the_window_is_sized_from_the_rate_and_the_round_trip_within_the_cap() {
        // Loopback: 4,000 tokens/s, 1 ms: 4 in flight -> 2 x 4 + 64.
        let (window, rtt) = window_after(512, 4_000.0, Duration::from_millis(1), 640);
        assert_eq!(rtt, Duration::from_millis(1));
        assert_eq!(window, 72);
        // 100 ms round trip: 400 in flight -> 864, capped at the quoted 512.
        let (window, _) = window_after(512, 4_000.0, Duration::from_millis(100), 640);
        assert_eq!(window, 512);
        // A slow producer (100 tokens/s, 100 ms): 10 in flight -> 84.
        let (window, _) = window_after(1_024, 100.0, Duration::from_millis(100), 320);
        assert_eq!(window, 84);
        // A tiny cap is the floor too.
        let (window, _) = window_after(4, 4_000.0, Duration::from_millis(1), 40);
        assert_eq!(window, 4);
        assert_eq!(receipt_interval(4), 2);
    }

    #[test]
    fn a_session_resumes_from_its_newest_receipt_within_the_deposit() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let session = JobId(1);
        let mut client = Transcript::session(session);
        client.push_prompt(H256::repeat_byte(1));
        client.push(1, "a");
        let first = signed(&client, &key, &domain());
        // The next prompt's stream starts where the newest receipt left off.
        let mut transcript = Transcript::resume(first.transcript, first.tokens);
        transcript.push_prompt(H256::repeat_byte(2));
        let mut credit = Credit::new(session, address_of(&key), transcript, domain(), 8)
            .resumed_from(Some(first.clone()))
            .limited_to(first.tokens + 2);
        let mut client = Transcript::resume(first.transcript, first.tokens);
        client.push_prompt(H256::repeat_byte(2));
        assert!(
            credit.accept(first.clone()).is_err(),
            "the resume point again"
        );
        for (id, text) in [(2, "b"), (3, "c")] {
            assert!(credit.has_room());
            credit.delivered(id, text);
            client.push(id, text);
        }
        assert!(
            credit.exhausted() && !credit.has_room(),
            "the deposit's limit"
        );
        credit.accept(signed(&client, &key, &domain())).unwrap();
        assert!(!credit.has_room(), "a receipt makes no room past the limit");
        assert_eq!(credit.newest().unwrap().tokens, 3);
    }
}
