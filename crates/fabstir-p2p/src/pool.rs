//! The connection pool: which peers we hold connections to, when each was last used, and
//! which to close. Pure bookkeeping in a [`DashMap`]; the event loop applies its decisions
//! (closing connections) and feeds it connection events, so it is testable without a swarm.
//!
//! - At most `max_connections` peers are connected; when a new one pushes the count over,
//!   the least recently used peer without an open lease (a running stream) is closed; when
//!   every other peer is leased the new one is closed instead: a peer that is streaming is
//!   never cut off to make room.
//! - Peers unused for `idle_timeout` and without a lease are closed.
//! - Every outbound use is a hit (a connection was open) or a miss (one had to be dialed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::PoolConfig;
use dashmap::DashMap;
use libp2p::PeerId;

/// Counters of the pool, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Peers connected now.
    pub connected: usize,
    /// The limit.
    pub max_connections: usize,
    /// Uses that found an open connection.
    pub hits: u64,
    /// Uses that had to dial.
    pub misses: u64,
    /// Peers closed because they were idle too long.
    pub evicted_idle: u64,
    /// Peers closed to make room under the limit.
    pub evicted_full: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last_used: Instant,
    leases: usize,
}

/// Connection pool state shared by the event loop and the handles.
#[derive(Debug)]
pub struct ConnectionPool {
    config: PoolConfig,
    peers: DashMap<PeerId, Entry>,
    hits: AtomicU64,
    misses: AtomicU64,
    evicted_idle: AtomicU64,
    evicted_full: AtomicU64,
}

impl ConnectionPool {
    /// An empty pool with these limits (`max_connections` of 0 is treated as 1).
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config: PoolConfig {
                max_connections: config.max_connections.max(1),
                ..config
            },
            peers: DashMap::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evicted_idle: AtomicU64::new(0),
            evicted_full: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Records an outbound use of `peer` at `now`: a hit if it is connected (its idle clock
    /// restarts), a miss otherwise. Returns whether it was a hit.
    pub fn record_use(&self, peer: &PeerId, now: Instant) -> bool {
        match self.peers.get_mut(peer) {
            Some(mut entry) => {
                entry.last_used = now;
                self.hits.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Restarts `peer`'s idle clock without counting a hit or miss (inbound traffic).
    pub fn touch(&self, peer: &PeerId, now: Instant) {
        if let Some(mut entry) = self.peers.get_mut(peer) {
            entry.last_used = now;
        }
    }

    /// Records that `peer` is connected. If that puts the pool over its limit, returns the
    /// peer to close: the least recently used one without a lease, or `peer` itself when
    /// every other one is leased.
    pub fn connected(&self, peer: PeerId, now: Instant) -> Option<PeerId> {
        self.peers.entry(peer).or_insert(Entry {
            last_used: now,
            leases: 0,
        });
        if self.peers.len() <= self.config.max_connections {
            return None;
        }
        let victim = self
            .peers
            .iter()
            .filter(|e| *e.key() != peer && e.value().leases == 0)
            .map(|e| (e.value().last_used, *e.key()))
            .min_by(|a, b| (a.0, a.1.to_bytes()).cmp(&(b.0, b.1.to_bytes())))
            .map_or(peer, |(_, p)| p);
        self.peers.remove(&victim);
        self.evicted_full.fetch_add(1, Ordering::Relaxed);
        Some(victim)
    }

    /// Records that the last connection to `peer` closed.
    pub fn disconnected(&self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Whether `peer` is connected.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Peers connected now.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.peers.iter().map(|e| *e.key()).collect()
    }

    /// Takes a lease on `peer` (a running stream): it is not closed as idle while leased and
    /// is evicted last when the pool is full. The lease ends when the guard drops.
    pub fn lease(self: &Arc<Self>, peer: PeerId, now: Instant) -> PoolLease {
        if let Some(mut entry) = self.peers.get_mut(&peer) {
            entry.leases += 1;
            entry.last_used = now;
        }
        PoolLease {
            pool: Arc::clone(self),
            peer,
        }
    }

    /// Removes and returns the peers idle for at least `idle_timeout` at `now` (without a
    /// lease); the caller closes their connections.
    pub fn take_idle(&self, now: Instant) -> Vec<PeerId> {
        let idle: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|e| {
                e.value().leases == 0
                    && now.saturating_duration_since(e.value().last_used)
                        >= self.config.idle_timeout
            })
            .map(|e| *e.key())
            .collect();
        for peer in &idle {
            self.peers.remove(peer);
        }
        self.evicted_idle.fetch_add(
            u64::try_from(idle.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        idle
    }

    /// The counters now.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            connected: self.peers.len(),
            max_connections: self.config.max_connections,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evicted_idle: self.evicted_idle.load(Ordering::Relaxed),
            evicted_full: self.evicted_full.load(Ordering::Relaxed),
        }
    }
}

/// A lease on a pooled connection; see [`ConnectionPool::lease`].
#[derive(Debug)]
pub struct PoolLease {
    pool: Arc<ConnectionPool>,
    peer: PeerId,
}

impl Drop for PoolLease {
    fn drop(&mut self) {
        if let Some(mut entry) = self.pool.peers.get_mut(&self.peer) {
            entry.leases = entry.leases.saturating_sub(1);
            entry.last_used = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pool(max: usize, idle_secs: u64) -> Arc<ConnectionPool> {
        Arc::new(ConnectionPool::new(PoolConfig {
            max_connections: max,
            idle_timeout: Duration::from_secs(idle_secs),
        }))
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let p = pool(2, 60);
        let (a, t) = (PeerId::random(), Instant::now());
        assert!(!p.record_use(&a, t));
        assert_eq!(p.connected(a, t), None);
        assert!(p.record_use(&a, t));
        assert!(p.record_use(&a, t));
        let s = p.stats();
        assert_eq!((s.hits, s.misses, s.connected), (2, 1, 1));
        p.disconnected(&a);
        assert!(!p.record_use(&a, t));
        assert_eq!(p.stats().misses, 2);
    }

    #[test]
    fn the_limit_holds_and_the_least_recently_used_goes_first() {
        let p = pool(3, 60);
        let t = Instant::now();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            assert_eq!(p.connected(*peer, t + Duration::from_secs(i as u64)), None);
        }
        // Peer 0 is used again, so peer 1 is now the least recently used.
        p.record_use(&peers[0], t + Duration::from_secs(10));
        let new = PeerId::random();
        assert_eq!(
            p.connected(new, t + Duration::from_secs(11)),
            Some(peers[1])
        );
        assert_eq!(p.stats().connected, 3);
        assert_eq!(p.stats().evicted_full, 1);
        assert!(!p.is_connected(&peers[1]));
    }

    #[test]
    fn leased_peers_are_evicted_last() {
        let p = pool(2, 60);
        let t = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        p.connected(a, t);
        p.connected(b, t + Duration::from_secs(1));
        let lease = p.lease(a, t + Duration::from_secs(2));
        // `a` was used last but leased; `b` is idle, so `b` goes.
        assert_eq!(p.connected(c, t + Duration::from_secs(3)), Some(b));
        drop(lease);
        // With every peer leased the newcomer goes: the limit is hard, and no stream is cut.
        let _la = p.lease(a, t + Duration::from_secs(4));
        let _lc = p.lease(c, t + Duration::from_secs(5));
        let d = PeerId::random();
        assert_eq!(p.connected(d, t + Duration::from_secs(6)), Some(d));
        assert_eq!(p.stats().connected, 2);
        assert!(p.is_connected(&a) && p.is_connected(&c));
    }

    #[test]
    fn idle_peers_are_taken_and_leased_ones_kept() {
        let p = pool(10, 5);
        let t = Instant::now();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        p.connected(a, t);
        p.connected(b, t);
        p.connected(c, t + Duration::from_secs(4));
        let _lease = p.lease(b, t);
        assert!(p.take_idle(t + Duration::from_secs(4)).is_empty());
        assert_eq!(p.take_idle(t + Duration::from_secs(5)), vec![a]);
        assert_eq!(p.stats().evicted_idle, 1);
        assert!(p.is_connected(&b) && p.is_connected(&c));
        let mut later = p.take_idle(t + Duration::from_secs(20));
        later.sort();
        assert_eq!(later, vec![c]);
    }
}
