//! Ctrl-C and SIGTERM: a flag the loops check, so that an interrupted run
//! ends its trial, closes its sockets from their own namespaces (libxdp
//! detaches its XDP programs from the pods' interfaces) and says so,
//! instead of dying with the programs left attached.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Catches SIGINT and SIGTERM from now on.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is
        // async-signal-safe; signal(2) replaces the default action.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Whether the user asked to stop.
#[inline]
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
