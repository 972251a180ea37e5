//! The forwarding database: which MAC lives behind which port.
//!
//! Ownership: the controller owns the one [`MacTable`] (static entries and
//! learned entries, aging, per-port limits). Workers never write it: they
//! read the [`FdbView`] published in the snapshot and, when they see a source
//! MAC that the view does not place on the frame's ingress port, send a
//! [`LearnEvent`] over a bounded channel. Until the controller publishes the
//! new view, frames to that MAC are flooded, which is correct, only slower.
//!
//! Aging needs to know when a MAC was last seen without a message per frame:
//! each learned entry carries a shared timestamp that workers refresh (a
//! relaxed store, at most about once a second per MAC) and the controller reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::Sender;
use rustc_hash::FxHashMap;

use crate::{MAX_PORTS, MacKey, PortId};

/// Default seconds before an idle learned MAC is forgotten.
pub const DEFAULT_AGING_SECS: u64 = 300;
/// Default most learned MACs per port.
pub const DEFAULT_MAC_LIMIT: u32 = 1024;
/// How stale a timestamp may get before a worker refreshes it.
pub const REFRESH_MS: u64 = 1000;

/// A worker's report: frames from `mac` arrive on `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LearnEvent {
    pub mac: MacKey,
    pub port: PortId,
}

const CACHE_SLOTS: usize = 256;
/// A report for the same MAC and port is not repeated within this time.
const REPORT_HOLDOFF_MS: u64 = 50;

/// A worker's learning state: the channel to the controller and a small
/// cache that stops one new MAC from producing a report per frame while the
/// controller has not yet published it.
pub struct Learner {
    tx: Sender<LearnEvent>,
    recent: Box<[(u64, u16, u64); CACHE_SLOTS]>,
    /// Reports lost because the channel was full (they are retried by later frames).
    pub overflows: u64,
}

impl Learner {
    pub fn new(tx: Sender<LearnEvent>) -> Self {
        Learner {
            tx,
            recent: Box::new([(u64::MAX, 0, 0); CACHE_SLOTS]),
            overflows: 0,
        }
    }

    #[inline]
    pub(crate) fn report(&mut self, ev: LearnEvent, now: u64) {
        let slot = &mut self.recent[(ev.mac as usize ^ (ev.mac >> 8) as usize) % CACHE_SLOTS];
        if slot.0 == ev.mac && slot.1 == ev.port && now.saturating_sub(slot.2) < REPORT_HOLDOFF_MS {
            return;
        }
        if self.tx.try_send(ev).is_err() {
            self.overflows += 1;
            return;
        }
        *slot = (ev.mac, ev.port, now);
    }
}

/// One entry of the published view.
#[derive(Debug, Clone)]
pub struct FdbSlot {
    pub port: PortId,
    pub is_static: bool,
    /// Last time (ms, [`crate::clock::now_ms`]) a frame from this MAC was seen.
    pub seen: Arc<AtomicU64>,
}

impl FdbSlot {
    /// Records that the MAC was seen at `now`, writing only when the stored
    /// time is more than [`REFRESH_MS`] old so that the line stays shared.
    #[inline]
    pub fn touch(&self, now: u64) {
        if now.saturating_sub(self.seen.load(Relaxed)) >= REFRESH_MS {
            self.seen.store(now, Relaxed);
        }
    }
}

/// The immutable MAC → port map workers look up.
#[derive(Debug, Clone, Default)]
pub struct FdbView {
    map: Arc<FxHashMap<MacKey, FdbSlot>>,
}

impl FdbView {
    #[inline]
    pub fn get(&self, mac: MacKey) -> Option<&FdbSlot> {
        self.map.get(&mac)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A copy whose entries' last-seen times are its own: what a dry run
    /// (`vswitchctl trace inject`) learns from, so that it refreshes no
    /// real entry.
    pub fn detached(&self) -> FdbView {
        let map = self
            .map
            .iter()
            .map(|(mac, s)| {
                let seen = Arc::new(AtomicU64::new(s.seen.load(Relaxed)));
                let slot = FdbSlot {
                    port: s.port,
                    is_static: s.is_static,
                    seen,
                };
                (*mac, slot)
            })
            .collect();
        FdbView { map: Arc::new(map) }
    }
}

/// How an entry was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Static,
    Learned,
}

/// What [`MacTable::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LearnOutcome {
    /// A new learned entry.
    New,
    /// The MAC moved here from another port.
    Moved { from: PortId },
    /// Already known on this port; timestamp refreshed.
    Refreshed,
    /// A static entry owns the MAC; nothing learned.
    Static,
    /// The port is at its learned-MAC limit; nothing learned.
    LimitReached,
}

impl LearnOutcome {
    /// True when the published view must change.
    pub fn changed(self) -> bool {
        matches!(self, LearnOutcome::New | LearnOutcome::Moved { .. })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    port: PortId,
    kind: EntryKind,
    seen: Arc<AtomicU64>,
}

/// A row of [`MacTable::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbRow {
    pub mac: MacKey,
    pub port: PortId,
    pub kind: EntryKind,
    /// Milliseconds since last seen (learned entries).
    pub idle_ms: Option<u64>,
}

/// The authoritative table, owned by the controller.
pub struct MacTable {
    entries: FxHashMap<MacKey, Entry>,
    learned_per_port: Vec<u32>,
    limit: u32,
    aging_ms: u64,
}

impl MacTable {
    pub fn new(aging_secs: u64, limit: u32) -> Self {
        MacTable {
            entries: FxHashMap::default(),
            learned_per_port: vec![0; MAX_PORTS],
            limit,
            aging_ms: aging_secs.saturating_mul(1000),
        }
    }

    fn count_mut(&mut self, port: PortId) -> &mut u32 {
        &mut self.learned_per_port[usize::from(port) % MAX_PORTS]
    }

    /// Learned MACs on `port`.
    pub fn learned_on(&self, port: PortId) -> u32 {
        self.learned_per_port[usize::from(port) % MAX_PORTS]
    }

    /// True when `port` may learn no more MACs.
    pub fn is_full(&self, port: PortId) -> bool {
        self.learned_on(port) >= self.limit
    }

    /// Handles a worker's report that `mac` was seen on `port` at `now`.
    pub fn learn(&mut self, mac: MacKey, port: PortId, now: u64) -> LearnOutcome {
        if let Some(e) = self.entries.get(&mac) {
            if e.kind == EntryKind::Static {
                return LearnOutcome::Static;
            }
            if e.port == port {
                e.seen.store(now, Relaxed);
                return LearnOutcome::Refreshed;
            }
        }
        if self.is_full(port) {
            return LearnOutcome::LimitReached;
        }
        let outcome = match self.entries.get(&mac).map(|e| e.port) {
            Some(from) => {
                *self.count_mut(from) -= 1;
                LearnOutcome::Moved { from }
            }
            None => LearnOutcome::New,
        };
        *self.count_mut(port) += 1;
        let seen = Arc::new(AtomicU64::new(now));
        self.entries.insert(
            mac,
            Entry {
                port,
                kind: EntryKind::Learned,
                seen,
            },
        );
        outcome
    }

    /// Adds or replaces a static entry.
    pub fn add_static(&mut self, mac: MacKey, port: PortId) {
        self.remove(mac);
        let seen = Arc::new(AtomicU64::new(0));
        self.entries.insert(
            mac,
            Entry {
                port,
                kind: EntryKind::Static,
                seen,
            },
        );
    }

    /// Removes an entry of either kind; returns its kind.
    pub fn remove(&mut self, mac: MacKey) -> Option<EntryKind> {
        let e = self.entries.remove(&mac)?;
        if e.kind == EntryKind::Learned {
            *self.count_mut(e.port) -= 1;
        }
        Some(e.kind)
    }

    /// Forgets all learned entries; returns how many.
    pub fn flush_learned(&mut self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.kind == EntryKind::Static);
        self.learned_per_port.iter_mut().for_each(|c| *c = 0);
        before - self.entries.len()
    }

    /// Removes learned entries idle for longer than the aging time.
    pub fn age(&mut self, now: u64) -> usize {
        let aging = self.aging_ms;
        let mut expired = Vec::new();
        for (mac, e) in &self.entries {
            if e.kind == EntryKind::Learned && now.saturating_sub(e.seen.load(Relaxed)) > aging {
                expired.push(*mac);
            }
        }
        for mac in &expired {
            self.remove(*mac);
        }
        expired.len()
    }

    /// Removes every entry (static and learned) pointing at `port`.
    pub fn remove_port(&mut self, port: PortId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.port != port);
        *self.count_mut(port) = 0;
        before - self.entries.len()
    }

    /// Forgets the MACs learned on `port` (it went down); static entries stay.
    pub fn remove_learned_on(&mut self, port: PortId) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, e| e.port != port || e.kind == EntryKind::Static);
        *self.count_mut(port) = 0;
        before - self.entries.len()
    }

    /// The entry for `mac`.
    pub fn get(&self, mac: MacKey) -> Option<(PortId, EntryKind)> {
        self.entries.get(&mac).map(|e| (e.port, e.kind))
    }

    /// All entries, sorted by MAC.
    pub fn entries(&self, now: u64) -> Vec<FdbRow> {
        let mut rows: Vec<FdbRow> = self
            .entries
            .iter()
            .map(|(mac, e)| FdbRow {
                mac: *mac,
                port: e.port,
                kind: e.kind,
                idle_ms: (e.kind == EntryKind::Learned)
                    .then(|| now.saturating_sub(e.seen.load(Relaxed))),
            })
            .collect();
        rows.sort_by_key(|r| r.mac);
        rows
    }

    /// Numbers of (static, learned) entries.
    pub fn summary(&self) -> (usize, usize) {
        let learned = self
            .learned_per_port
            .iter()
            .map(|c| *c as usize)
            .sum::<usize>();
        (self.entries.len() - learned, learned)
    }

    /// The view to publish.
    pub fn view(&self) -> FdbView {
        let map = self
            .entries
            .iter()
            .map(|(mac, e)| {
                let slot = FdbSlot {
                    port: e.port,
                    is_static: e.kind == EntryKind::Static,
                    seen: e.seen.clone(),
                };
                (*mac, slot)
            })
            .collect();
        FdbView { map: Arc::new(map) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_move_refresh() {
        let mut t = MacTable::new(300, 10);
        assert_eq!(t.learn(1, 1, 0), LearnOutcome::New);
        assert_eq!(t.learn(1, 1, 5), LearnOutcome::Refreshed);
        assert_eq!(t.learn(1, 2, 6), LearnOutcome::Moved { from: 1 });
        assert_eq!((t.learned_on(1), t.learned_on(2)), (0, 1));
        assert_eq!(t.view().get(1).unwrap().port, 2);
    }

    #[test]
    fn aging_uses_worker_timestamps() {
        let mut t = MacTable::new(1, 10);
        t.learn(1, 1, 0);
        t.learn(2, 1, 0);
        t.add_static(3, 1);
        // A worker saw MAC 2 recently.
        t.view().get(2).unwrap().touch(1500);
        assert_eq!(t.age(1200), 1, "MAC 1 idle 1.2 s > 1 s");
        assert_eq!(t.get(1), None);
        assert!(t.get(2).is_some());
        assert_eq!(t.age(10_000), 1, "static entries never age");
        assert_eq!(t.get(3), Some((1, EntryKind::Static)));
    }

    #[test]
    fn limit_per_port() {
        let mut t = MacTable::new(300, 2);
        assert_eq!(t.learn(1, 1, 0), LearnOutcome::New);
        assert_eq!(t.learn(2, 1, 0), LearnOutcome::New);
        assert!(t.is_full(1));
        assert_eq!(t.learn(3, 1, 0), LearnOutcome::LimitReached);
        assert_eq!(
            t.learn(3, 2, 0),
            LearnOutcome::New,
            "other ports unaffected"
        );
        t.remove(1);
        assert!(!t.is_full(1));
    }

    #[test]
    fn static_wins_and_flush_keeps_static() {
        let mut t = MacTable::new(300, 2);
        t.learn(1, 1, 0);
        t.add_static(1, 2);
        assert_eq!(t.learned_on(1), 0);
        assert_eq!(t.learn(1, 3, 0), LearnOutcome::Static);
        t.learn(5, 3, 0);
        assert_eq!(t.flush_learned(), 1);
        assert_eq!(t.summary(), (1, 0));
        assert_eq!(t.remove_port(2), 1);
        assert_eq!(t.summary(), (0, 0));
    }
}
