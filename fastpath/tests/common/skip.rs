//! What a test does when this machine lacks what it needs (root, AF_XDP,
//! a second core): it fails, saying why, unless the run allows skipping
//! (`VSWITCH_TESTS_MAY_SKIP=1`); then it passes, and the skip is counted
//! (a line in the file `$VSWITCH_SKIP_LOG` names, which `scripts/test.sh`
//! counts and reports). Shared by the integration tests of `fastpath` and
//! `switch` (included by path).

use std::io::Write;

/// Test `name` cannot run here because of `why`: panics, or (when the run
/// allows skipping) records the skip; the caller then returns.
#[track_caller]
pub fn cannot_run(name: &str, why: &str) {
    if std::env::var_os("VSWITCH_TESTS_MAY_SKIP").is_none_or(|v| v != "1") {
        panic!("{name} cannot run here: {why} (VSWITCH_TESTS_MAY_SKIP=1 lets such tests skip)");
    }
    eprintln!("skipped {name}: {why}");
    if let Some(log) = std::env::var_os("VSWITCH_SKIP_LOG") {
        let line = format!("{name}: {why}\n");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log);
        if let Err(e) = f.and_then(|mut f| f.write_all(line.as_bytes())) {
            panic!("cannot record the skip of {name} in {log:?}: {e}");
        }
    }
}
