//! Detaching the program through netlink: from the interface in the
//! network namespace it was attached in, and only if it is still the
//! program this value attached.
//!
//! netlink resolves an ifindex in the calling thread's namespace, so a
//! [`UplinkProgram`] dropped on a thread of another namespace detaches
//! from a short-lived thread that enters the attaching namespace first.
//! The kernel's expected-program check (`old_prog_fd`) makes sure a program
//! someone else attached since is never removed.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;

use libxdp_sys::bpf_xdp_attach_opts;

use super::UplinkProgram;
use super::object::errno;

impl Drop for UplinkProgram {
    fn drop(&mut self) {
        let (ifindex, flags, prog_fd) = (self.ifindex, self.mode.flags(), self.prog_fd);
        // netlink resolves the ifindex in the calling thread's namespace:
        // from any other, it would name a different interface (the kernel's
        // expected-program check would then refuse, leaving ours attached).
        let result = if same_netns(&self.netns) {
            detach(ifindex, flags, prog_fd)
        } else {
            let ns = self.netns.as_raw_fd();
            std::thread::spawn(move || {
                // SAFETY: `ns` is the namespace file this value holds open
                // until the thread is joined below; setns changes only this
                // short-lived thread's namespace.
                if unsafe { libc::setns(ns, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                detach(ifindex, flags, prog_fd)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the detaching thread panicked")))
        };
        match result {
            Ok(()) => {}
            // The interface is gone, and the program with it.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
            Err(e) => tracing::warn!(ifindex, "detaching the uplink XDP program failed: {e}"),
        }
    }
}

/// Detaches the program `prog_fd` from `ifindex`, only if it is still the
/// one attached there (old_prog_fd makes libbpf ask the kernel to check).
fn detach(ifindex: u32, flags: u32, prog_fd: RawFd) -> io::Result<()> {
    // SAFETY: plain data, for which all-zero is a valid value.
    let mut opts: bpf_xdp_attach_opts = unsafe { std::mem::zeroed() };
    // libbpf refuses options with non-zero bytes past the last field it
    // knows, and Rust does not keep padding zeroed: the size given ends at
    // the last field, which leaves the trailing padding out.
    opts.sz = std::mem::offset_of!(bpf_xdp_attach_opts, old_prog_fd) + size_of::<libc::c_int>();
    opts.old_prog_fd = prog_fd;
    // SAFETY: `opts` is valid for the call; `prog_fd` is still open.
    let rc = unsafe { libxdp_sys::bpf_xdp_detach(ifindex as i32, flags, &opts) };
    if rc != 0 {
        return Err(errno(rc));
    }
    Ok(())
}

/// Whether the calling thread is in the namespace `ns` refers to.
fn same_netns(ns: &File) -> bool {
    match (ns.metadata(), std::fs::metadata("/proc/thread-self/ns/net")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
