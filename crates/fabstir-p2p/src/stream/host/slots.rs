//! Caps on what a host holds for remote peers, in all and per peer: handshakes in progress
//! (streams not yet authorized) and streams serving tokens. A slot is taken with
//! [`PeerSlots::try_take`] and given back when its guard drops; a peer holding nothing has
//! no entry, so the per-peer state is bounded by the caps themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use libp2p::PeerId;

/// Which cap refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Every slot is taken.
    Total,
    /// This peer holds its share.
    Peer,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_peer: HashMap<PeerId, usize>,
}

/// Slots under a total cap and a per-peer cap.
#[derive(Debug)]
pub(crate) struct PeerSlots {
    total: usize,
    per_peer: usize,
    held: Mutex<Held>,
}

impl PeerSlots {
    /// `total` slots, at most `per_peer` of them held by one peer (each at least 1).
    pub(crate) fn new(total: usize, per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            total: total.max(1),
            per_peer: per_peer.max(1),
            held: Mutex::new(Held::default()),
        })
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // A panic while holding the lock cannot leave the counts half-updated: every update
        // is one statement.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for `peer`, or says which cap is reached.
    pub(crate) fn try_take(self: &Arc<Self>, peer: PeerId) -> Result<Slot, Full> {
        let mut held = self.held();
        if held.total >= self.total {
            return Err(Full::Total);
        }
        let mine = held.per_peer.entry(peer).or_insert(0);
        if *mine >= self.per_peer {
            return Err(Full::Peer);
        }
        *mine += 1;
        held.total += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }

    /// Slots held now, in all and by `peer`.
    #[cfg(test)]
    fn count(&self, peer: &PeerId) -> (usize, usize) {
        let held = self.held();
        (held.total, held.per_peer.get(peer).copied().unwrap_or(0))
    }

    /// Peers holding at least one slot.
    #[cfg(test)]
    fn peers(&self) -> usize {
        self.held().per_peer.len()
    }
}

/// A held slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<PeerSlots>,
    peer: PeerId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held();
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.per_peer.get_mut(&self.peer) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_in_all_and_per_peer_and_dropping_gives_back() {
        let slots = PeerSlots::new(3, 2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let a1 = slots.try_take(a).unwrap();
        let _a2 = slots.try_take(a).unwrap();
        assert_eq!(slots.try_take(a).unwrap_err(), Full::Peer);
        let _b1 = slots.try_take(b).unwrap();
        assert_eq!(slots.try_take(b).unwrap_err(), Full::Total);
        assert_eq!(slots.count(&a), (3, 2));
        drop(a1);
        assert_eq!(slots.count(&a), (2, 1));
        let _b2 = slots.try_take(b).unwrap();
        assert_eq!(slots.count(&b), (3, 2));
    }

    #[test]
    fn a_peer_holding_nothing_leaves_no_state() {
        let slots = PeerSlots::new(10, 10);
        for _ in 0..100 {
            drop(slots.try_take(PeerId::random()).unwrap());
        }
        assert_eq!(slots.peers(), 0);
        assert_eq!(slots.count(&PeerId::random()), (0, 0));
    }
}
