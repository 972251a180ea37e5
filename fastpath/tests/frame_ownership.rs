//! Ports send only frames the worker holds: a frame already lent to a
//! ring or freed (as a bug elsewhere would leave it) is counted as a pool
//! error and skipped, never written, and the port goes on working. Here
//! for TAP ports, both ways they write (io_uring and a syscall per frame),
//! on a real device; AF_XDP in `uplink.rs`, memory ports in the worker's
//! unit tests.
//!
//! Needs root (TAP devices); elsewhere it fails, saying why, unless the run
//! allows skipping (`common/skip.rs`).

use std::process::Command;

use fastpath::pool::FramePool;
use fastpath::port::Port;
use fastpath::port::tap::{TapIo, TapPort};
use fastpath::tx::TxFrame;

#[path = "common/skip.rs"]
mod skip;

fn rx_packets(ifname: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/rx_packets"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A broadcast frame of an experimental EtherType (the kernel counts it
/// received and drops it).
fn frame(pool: &mut FramePool, marker: u8) -> TxFrame {
    let mut bytes = vec![0xff; 6];
    bytes.extend([0x02, 0x76, 0, 0, 0, 1, 0x88, 0xb5]);
    bytes.resize(60, marker);
    let (addr, len) = pool.write_frame(&bytes).unwrap();
    TxFrame::new(addr, len, 0)
}

#[test]
fn tap_ports_skip_frames_the_worker_does_not_hold() {
    let name = "tap_ports_skip_frames_the_worker_does_not_hold";
    if !nix_root() {
        skip::cannot_run(name, "needs root (TAP devices)");
        return;
    }
    for (io, ifname) in [(TapIo::IoUring, "vswown0"), (TapIo::Syscalls, "vswown1")] {
        let _ = Command::new("ip").args(["link", "del", ifname]).status();
        let mut port = TapPort::create(ifname, None, None, false, io, 1)
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            port.io(),
            io,
            "the TAP writes another way than asked (io_uring needs Linux 6.4+)"
        );
        let up = Command::new("ip")
            .args(["link", "set", ifname, "up"])
            .status()
            .unwrap();
        assert!(up.success());
        let mut pool = FramePool::new(64);
        let burst = [
            frame(&mut pool, 1),
            frame(&mut pool, 2),
            frame(&mut pool, 3),
        ];
        pool.lend(burst[1].addr, 9);
        let before = (rx_packets(ifname), pool.counts());
        assert_eq!(port.tx_burst(&mut pool, &burst).unwrap(), 3, "{io:?}");
        let after = pool.counts();
        assert_eq!(
            rx_packets(ifname),
            before.0 + 2,
            "{io:?}: only the held frames written"
        );
        assert_eq!(after.errors, before.1.errors + 1, "{io:?}");
        assert_eq!((after.lent, after.free), (1, before.1.free + 2), "{io:?}");
        // The port goes on.
        let next = frame(&mut pool, 4);
        assert_eq!(port.tx_burst(&mut pool, &[next]).unwrap(), 1, "{io:?}");
        assert_eq!(rx_packets(ifname), before.0 + 3, "{io:?}");
        port.on_remove();
        drop(port);
        let _ = Command::new("ip").args(["link", "del", ifname]).status();
    }
}

fn nix_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
