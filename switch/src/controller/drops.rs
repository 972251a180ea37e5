//! Kernel drops of a TAP port, counted across the times the port opens.

use std::cell::Cell;

/// A TAP device's `tx_dropped` (frames its pod sent that the kernel dropped
/// before the switch read them) counted from when the switch opened it, over
/// every time it did: read on demand, so it needs interior mutability.
#[derive(Debug, Default)]
pub(super) struct TapDrops {
    /// The device's count when the port last opened (`None`: not read yet).
    base: Cell<Option<u64>>,
    /// Drops counted while the port was open before.
    earlier: Cell<u64>,
    /// The count since `base` at the last read.
    seen: Cell<u64>,
}

impl TapDrops {
    /// The total after reading `now` from the device (`None`: it could
    /// not be read, the last count stands).
    pub(super) fn update(&self, now: Option<u64>) -> u64 {
        if let Some(now) = now {
            match self.base.get() {
                None => self.base.set(Some(now)),
                // Never backwards, whatever the device does.
                Some(base) => self.seen.set(self.seen.get().max(now.saturating_sub(base))),
            }
        }
        self.earlier.get() + self.seen.get()
    }

    /// The port opened again: the device (perhaps a new one) counts anew.
    pub(super) fn reopened(&self, now: Option<u64>) {
        self.earlier.set(self.earlier.get() + self.seen.get());
        self.seen.set(0);
        self.base.set(now);
    }
}

#[cfg(test)]
mod tests {
    use super::TapDrops;

    #[test]
    fn counts_from_the_first_read_and_across_reopens() {
        let d = TapDrops::default();
        // A persistent TAP re-attached after a restart: its old drops are
        // not the switch's.
        d.reopened(Some(500));
        assert_eq!(d.update(Some(500)), 0);
        assert_eq!(d.update(Some(530)), 30);
        // Unreadable (namespace gone): the last count stands.
        assert_eq!(d.update(None), 30);
        // Opened again on a new device that counts from zero.
        d.reopened(Some(0));
        assert_eq!(d.update(Some(7)), 37);
        // Opened again, the count unreadable at first: the first read
        // becomes the base.
        d.reopened(None);
        assert_eq!(d.update(Some(100)), 37);
        assert_eq!(d.update(Some(104)), 41);
        // A counter that went backwards (a device replaced unnoticed)
        // never takes drops away.
        assert_eq!(d.update(Some(90)), 41);
    }
}
