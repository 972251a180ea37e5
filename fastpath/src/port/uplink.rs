//! The uplink's XDP program: attached to the node's NIC, it redirects to
//! vswitchd's AF_XDP sockets only the traffic that is the switch's, and
//! passes everything else (the node's ssh, kubelet, DNS, ARP) to the kernel.
//!
//! The program (`fastpath/bpf/uplink.bpf.c`, compiled by `build.rs` and
//! embedded here) decides from maps that [`UplinkProgram`] fills: the
//! switch's router MAC, the IPv4 and IPv6 prefixes it serves, the node
//! addresses on which it takes VXLAN, and one AF_XDP socket per RX queue.
//! The uplink's socket is opened with
//! [`AfXdpPort::open_without_program`](super::afxdp::AfXdpPort::open_without_program)
//! (so libxdp does not replace this program with its own) in the mode
//! [`UplinkProgram::mode`] reports, then registered with
//! [`UplinkProgram::register_socket`].
//!
//! Invariants:
//! - The node keeps its own connectivity whatever vswitchd does. The
//!   program is attached through netlink, not a bpf_link, so it stays on
//!   the NIC if vswitchd crashes; the kernel then removes the closed sockets
//!   from `xsks_map`, and a redirect to a queue without a socket falls back
//!   to XDP_PASS. Dropping an [`UplinkProgram`] detaches it.
//! - Drop detaches only the program this value attached (the kernel checks
//!   the expected program), from the interface in the network namespace it
//!   was attached in, whichever thread drops it.
//! - The prefix and VXLAN maps hold exactly what this value's sets record:
//!   every map change is made first and recorded only when it succeeded.
//! - Nothing here runs per packet.
//!
//! Layout: this file holds the public types and attaching; `uplink/object`
//! loads the embedded object, `uplink/maps` fills the program's maps, and
//! `uplink/netlink` detaches it on drop.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::ptr;

use super::afxdp::AttachMode;

mod maps;
mod netlink;
mod object;

use maps::Maps;
use object::{Object, PROGRAM, errno, load};

// From linux/if_link.h (not in libxdp-sys's bindings).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Entries of `xsks_map`: RX queues the program can redirect from.
pub const MAX_QUEUES: u32 = 64;

/// How [`UplinkProgram::attach`] may attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkAttach {
    /// Native XDP if the driver supports it, else generic.
    Auto,
    Native,
    Generic,
}

/// How the program runs once attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (XDP_FLAGS_DRV_MODE).
    Native,
    /// On the kernel's socket buffers (XDP_FLAGS_SKB_MODE).
    Generic,
}

impl XdpMode {
    /// `native` or `generic`, as `port list` shows modes.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }

    /// The mode to open the uplink's AF_XDP socket in: a socket must be
    /// bound the way the program redirecting to it runs (copy mode under a
    /// generic program).
    pub fn socket_mode(self) -> AttachMode {
        match self {
            XdpMode::Native => AttachMode::Native,
            XdpMode::Generic => AttachMode::Generic,
        }
    }

    fn flags(self) -> u32 {
        match self {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// What failed while loading, attaching or configuring the uplink program.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("opening the uplink XDP object failed: {0}")]
    Open(io::Error),
    #[error(
        "loading the uplink XDP program failed: {0} (needs root or CAP_BPF; \
         VSWITCH_LIBXDP_LOG=1 shows libbpf's log, with the verifier's)"
    )]
    Load(io::Error),
    #[error("the uplink XDP object has no {kind} named '{name}'")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("uplink map '{map}' has {what} size {got}, but vswitchd writes {want} bytes")]
    MapLayout {
        map: &'static str,
        what: &'static str,
        got: u32,
        want: usize,
    },
    #[error("cannot open the network namespace of this thread: {0}")]
    Netns(io::Error),
    #[error("attaching the uplink XDP program to ifindex {ifindex} failed: {attempts}")]
    Attach { ifindex: u32, attempts: String },
    #[error("prefix {addr}/{len} is invalid: the prefix length is at most {max}")]
    PrefixLength { addr: IpAddr, len: u8, max: u8 },
    #[error("AF_XDP queue {queue} is out of range: the uplink serves queues 0 to {}", MAX_QUEUES - 1)]
    Queue { queue: u32 },
    #[error("{op} {what} in uplink map '{map}' failed: {err}")]
    Map {
        op: &'static str,
        map: &'static str,
        what: String,
        err: io::Error,
    },
}

/// The uplink XDP program, loaded and attached to one interface; see the
/// module documentation.
pub struct UplinkProgram {
    ifindex: u32,
    mode: XdpMode,
    prog_fd: RawFd,
    maps: Maps,
    /// Prefixes in `dst4`/`dst6`, host bits cleared.
    prefixes: BTreeSet<(IpAddr, u8)>,
    /// Addresses in `vxlan4`.
    vxlan: BTreeSet<Ipv4Addr>,
    /// NodePorts in `nodeports`, as (port, IP protocol).
    node_ports: BTreeSet<(u16, u8)>,
    /// The network namespace `ifindex` belongs to (the attaching thread's).
    netns: File,
    // Last: closed after Drop has detached the program.
    _obj: Object,
}

// SAFETY: the libbpf object is only touched through this value (map and
// program fds are plain descriptors, usable from any thread), and Drop
// detaches in the right namespace from whichever thread runs it.
unsafe impl Send for UplinkProgram {}

impl UplinkProgram {
    /// Loads the program and attaches it to interface `ifindex` of the
    /// calling thread's network namespace, in the modes `mode` allows (for
    /// `Auto`, native first, then generic). An XDP program already on the
    /// interface in the same mode is replaced (after a crash, vswitchd
    /// finds its previous program there); one in the other mode makes the
    /// kernel refuse this mode.
    pub fn attach(ifindex: u32, mode: UplinkAttach) -> Result<Self, UplinkError> {
        let netns = File::open("/proc/thread-self/ns/net").map_err(UplinkError::Netns)?;
        let obj = load()?;
        // SAFETY: `obj` is a live, loaded object; PROGRAM is NUL-terminated.
        let prog = unsafe {
            libxdp_sys::bpf_object__find_program_by_name(obj.0.as_ptr(), PROGRAM.as_ptr())
        };
        if prog.is_null() {
            return Err(UplinkError::Missing {
                kind: "program",
                name: "uplink",
            });
        }
        // SAFETY: `prog` belongs to `obj`, which is live and loaded.
        let prog_fd = unsafe { libxdp_sys::bpf_program__fd(prog) };
        if prog_fd < 0 {
            return Err(UplinkError::Load(errno(prog_fd)));
        }
        let maps = Maps::find(&obj)?;

        let attempts: &[XdpMode] = match mode {
            UplinkAttach::Auto => &[XdpMode::Native, XdpMode::Generic],
            UplinkAttach::Native => &[XdpMode::Native],
            UplinkAttach::Generic => &[XdpMode::Generic],
        };
        let mut failures = Vec::new();
        for &m in attempts {
            // SAFETY: `prog_fd` is the loaded program's fd; no options.
            let rc = unsafe {
                libxdp_sys::bpf_xdp_attach(ifindex as i32, prog_fd, m.flags(), ptr::null())
            };
            if rc == 0 {
                if !failures.is_empty() {
                    tracing::info!(
                        ifindex,
                        mode = m.as_str(),
                        "uplink XDP program attached after {}",
                        failures.join("; ")
                    );
                }
                return Ok(UplinkProgram {
                    ifindex,
                    mode: m,
                    prog_fd,
                    maps,
                    prefixes: BTreeSet::new(),
                    vxlan: BTreeSet::new(),
                    node_ports: BTreeSet::new(),
                    netns,
                    _obj: obj,
                });
            }
            failures.push(format!("{}: {}", m.as_str(), errno(rc)));
        }
        Err(UplinkError::Attach {
            ifindex,
            attempts: failures.join("; "),
        })
    }

    /// How the program runs; open the uplink's socket in
    /// [`XdpMode::socket_mode`].
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}
