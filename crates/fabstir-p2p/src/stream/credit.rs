//! The host's credit window on a stream: it keeps the transcript of what it delivered, checks
//! each receipt the client sends (newer than the last, counting no more than was delivered,
//! the host's own transcript at that count, signed by the job's client for this chain and
//! marketplace), and lets tokens out only while fewer than the window are unreceipted. So the
//! most either side can lose is one window.

use std::collections::VecDeque;

use fabstir_core::JobId;
use fabstir_core::primitives::{Address, H256};
use fabstir_core::receipt::{ReceiptDomain, SignedReceipt, Transcript};

/// The receipts of one job's stream.
pub(crate) struct Credit {
    job: JobId,
    client: Address,
    domain: ReceiptDomain,
    window: u64,
    transcript: Transcript,
    /// `(counted, hash)` after each delivered token not yet covered by a receipt.
    unreceipted: VecDeque<(u64, H256)>,
    newest: Option<SignedReceipt>,
}

impl Credit {
    /// A stream of `job` for `client`, whose prompt hashes to `prompt_hash`, with `window`
    /// tokens of credit.
    pub(crate) fn new(
        job: JobId,
        client: Address,
        prompt_hash: H256,
        domain: ReceiptDomain,
        window: u32,
    ) -> Self {
        Self {
            job,
            client,
            domain,
            window: u64::from(window.max(1)),
            transcript: Transcript::new(job, prompt_hash),
            unreceipted: VecDeque::new(),
            newest: None,
        }
    }

    /// Records a token written to the client.
    pub(crate) fn delivered(&mut self, id: u32, text: &str) {
        self.transcript.push(id, text);
        self.unreceipted
            .push_back((self.transcript.counted(), self.transcript.hash()));
    }

    /// Counted tokens covered by the newest receipt.
    pub(crate) fn receipted(&self) -> u64 {
        self.newest.as_ref().map_or(0, |r| r.tokens)
    }

    /// Counted tokens delivered.
    pub(crate) fn counted(&self) -> u64 {
        self.transcript.counted()
    }

    /// Whether another token may go out: fewer than the window are unreceipted.
    pub(crate) fn has_room(&self) -> bool {
        self.counted() - self.receipted() < self.window
    }

    /// Whether every counted token delivered is receipted.
    pub(crate) fn settled_up(&self) -> bool {
        self.counted() == self.receipted()
    }

    /// Checks and keeps a receipt; a refused one changes nothing and says why.
    pub(crate) fn accept(&mut self, receipt: SignedReceipt) -> Result<(), String> {
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
            .position(|&(counted, hash)| counted == receipt.tokens && hash == receipt.transcript)
            .ok_or_else(|| "the receipt's transcript is not what was delivered".to_owned())?;
        let signer = receipt
            .receipt(self.job)
            .signer(&self.domain, &receipt.signature)
            .map_err(|e| format!("receipt signature: {e}"))?;
        if signer != self.client {
            return Err(format!("receipt signed by {signer:#x}, not the client"));
        }
        self.unreceipted.drain(..=position);
        self.newest = Some(receipt);
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
        let mut credit = Credit::new(JobId(1), address_of(&key), prompt, domain(), 2);
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
}
