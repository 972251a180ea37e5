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

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::ptr::{self, NonNull};

use libxdp_sys::{bpf_object, bpf_object_open_opts, bpf_xdp_attach_opts};

use super::afxdp::AttachMode;

// From linux/if_link.h (not in libxdp-sys's bindings).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Entries of `xsks_map`: RX queues the program can redirect from.
pub const MAX_QUEUES: u32 = 64;

/// The compiled program. libelf reads the ELF headers in place, so the
/// bytes are kept 8-byte aligned.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);
static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/uplink.bpf.o")));

const PROGRAM: &CStr = c"uplink";

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

/// The libbpf object; closing it closes the program's and maps' fds (an
/// attached program stays attached: the interface holds its own reference).
struct Object(NonNull<bpf_object>);

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful bpf_object__open_mem
        // and is closed exactly once, here.
        unsafe { libxdp_sys::bpf_object__close(self.0.as_ptr()) };
    }
}

/// One map of the object: its name (for errors) and fd (owned by the object).
#[derive(Debug, Clone, Copy)]
struct Map {
    name: &'static str,
    fd: RawFd,
}

impl Map {
    /// Looks `name` up in `obj` and checks that its key and value sizes are
    /// those of `K` and `V`, the types vswitchd writes: the kernel reads
    /// exactly the map's sizes from the pointers we pass.
    fn find<K, V>(obj: &Object, name: &'static str) -> Result<Map, UplinkError> {
        let cname = std::ffi::CString::new(name).expect("map names have no NUL");
        // SAFETY: `obj` is a live, loaded object and `cname` is NUL-terminated.
        let map =
            unsafe { libxdp_sys::bpf_object__find_map_by_name(obj.0.as_ptr(), cname.as_ptr()) };
        if map.is_null() {
            return Err(UplinkError::Missing { kind: "map", name });
        }
        // SAFETY: `map` belongs to `obj`, which is live.
        let (key, value, fd) = unsafe {
            (
                libxdp_sys::bpf_map__key_size(map),
                libxdp_sys::bpf_map__value_size(map),
                libxdp_sys::bpf_map__fd(map),
            )
        };
        for (what, got, want) in [
            ("key", key, size_of::<K>()),
            ("value", value, size_of::<V>()),
        ] {
            if got as usize != want {
                return Err(UplinkError::MapLayout {
                    map: name,
                    what,
                    got,
                    want,
                });
            }
        }
        if fd < 0 {
            return Err(UplinkError::Missing { kind: "map", name });
        }
        Ok(Map { name, fd })
    }

    /// Inserts or replaces `key` (BPF_ANY).
    fn update<K, V>(
        &self,
        key: &K,
        value: &V,
        what: impl FnOnce() -> String,
    ) -> Result<(), UplinkError> {
        // SAFETY: `find` checked that the map's key and value sizes are
        // those of K and V; both references are valid for reads.
        let rc = unsafe {
            libxdp_sys::bpf_map_update_elem(
                self.fd,
                ptr::from_ref(key).cast(),
                ptr::from_ref(value).cast(),
                u64::from(libxdp_sys::BPF_ANY),
            )
        };
        self.check(rc, "setting", what)
    }

    /// Deletes `key`; a key that is not there is not an error.
    fn delete<K>(&self, key: &K, what: impl FnOnce() -> String) -> Result<(), UplinkError> {
        // SAFETY: `find` checked that the map's key size is that of K.
        let rc = unsafe { libxdp_sys::bpf_map_delete_elem(self.fd, ptr::from_ref(key).cast()) };
        if rc == -libc::ENOENT {
            return Ok(());
        }
        self.check(rc, "deleting", what)
    }

    fn check(
        &self,
        rc: i32,
        op: &'static str,
        what: impl FnOnce() -> String,
    ) -> Result<(), UplinkError> {
        if rc == 0 {
            return Ok(());
        }
        Err(UplinkError::Map {
            op,
            map: self.name,
            what: what(),
            err: io::Error::from_raw_os_error(-rc),
        })
    }
}

/// Key of `dst4`: struct bpf_lpm_trie_key with a 4-byte address.
#[repr(C)]
struct Lpm4Key {
    prefixlen: u32,
    addr: [u8; 4],
}

/// Key of `dst6`: struct bpf_lpm_trie_key with a 16-byte address.
#[repr(C)]
struct Lpm6Key {
    prefixlen: u32,
    addr: [u8; 16],
}

/// Value of `config` entry 0: the router MAC and two bytes of padding.
type ConfigValue = [u8; 8];

/// The maps of the program.
struct Maps {
    xsks: Map,
    config: Map,
    dst4: Map,
    dst6: Map,
    vxlan4: Map,
    nodeports: Map,
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

fn errno(rc: i32) -> io::Error {
    io::Error::from_raw_os_error(rc.abs())
}

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
        let maps = Maps {
            xsks: Map::find::<u32, u32>(&obj, "xsks_map")?,
            config: Map::find::<u32, ConfigValue>(&obj, "config")?,
            dst4: Map::find::<Lpm4Key, u8>(&obj, "dst4")?,
            dst6: Map::find::<Lpm6Key, u8>(&obj, "dst6")?,
            vxlan4: Map::find::<[u8; 4], u8>(&obj, "vxlan4")?,
            nodeports: Map::find::<u32, u8>(&obj, "nodeports")?,
        };

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

    /// Frames to `mac` go to the switch. All zeros clears it.
    pub fn set_router_mac(&self, mac: [u8; 6]) -> Result<(), UplinkError> {
        let mut value: ConfigValue = [0; 8];
        value[..6].copy_from_slice(&mac);
        self.maps.config.update(&0u32, &value, || {
            let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
            format!("router MAC {}", hex.join(":"))
        })
    }

    /// Packets to `addr/prefix_len` go to the switch. Host bits of `addr`
    /// are ignored (10.244.1.7/24 is 10.244.1.0/24).
    pub fn add_prefix(&mut self, addr: IpAddr, prefix_len: u8) -> Result<(), UplinkError> {
        let p = network(addr, prefix_len)?;
        self.insert_prefix(p)
    }

    /// Packets to `addr/prefix_len` are no longer the switch's (unless a
    /// shorter prefix still covers them). Removing an absent prefix is not
    /// an error.
    pub fn remove_prefix(&mut self, addr: IpAddr, prefix_len: u8) -> Result<(), UplinkError> {
        let p = network(addr, prefix_len)?;
        self.delete_prefix(p)
    }

    /// Makes the prefix maps hold exactly `prefixes`. An invalid prefix
    /// fails the call before any map changes. New prefixes are added before
    /// stale ones are removed, so traffic moved from one prefix to another
    /// never falls to the kernel in between.
    pub fn set_prefixes(&mut self, prefixes: &[(IpAddr, u8)]) -> Result<(), UplinkError> {
        let want = prefixes
            .iter()
            .map(|&(a, l)| network(a, l))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let new: Vec<_> = want.difference(&self.prefixes).copied().collect();
        for p in new {
            self.insert_prefix(p)?;
        }
        let stale: Vec<_> = self.prefixes.difference(&want).copied().collect();
        for p in stale {
            self.delete_prefix(p)?;
        }
        Ok(())
    }

    /// The prefixes the maps hold, host bits cleared.
    pub fn prefixes(&self) -> impl Iterator<Item = (IpAddr, u8)> + '_ {
        self.prefixes.iter().copied()
    }

    /// Makes `vxlan4` hold exactly `addrs`: the node addresses on which
    /// VXLAN (UDP port 4789) is the switch's. Added before removed, as in
    /// [`UplinkProgram::set_prefixes`].
    pub fn set_vxlan_addrs(&mut self, addrs: &[Ipv4Addr]) -> Result<(), UplinkError> {
        let want: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
        let new: Vec<_> = want.difference(&self.vxlan).copied().collect();
        for a in new {
            self.maps
                .vxlan4
                .update(&a.octets(), &1u8, || format!("VXLAN address {a}"))?;
            self.vxlan.insert(a);
        }
        let stale: Vec<_> = self.vxlan.difference(&want).copied().collect();
        for a in stale {
            self.maps
                .vxlan4
                .delete(&a.octets(), || format!("VXLAN address {a}"))?;
            self.vxlan.remove(&a);
        }
        Ok(())
    }

    /// Makes `nodeports` hold exactly `ports` (port, IP protocol): TCP and
    /// UDP to those ports of the node's addresses (`vxlan4`) are the
    /// switch's. Added before removed.
    pub fn set_node_ports(&mut self, ports: &[(u16, u8)]) -> Result<(), UplinkError> {
        let want: BTreeSet<(u16, u8)> = ports.iter().copied().collect();
        let key = |(port, proto): (u16, u8)| u32::from(proto) << 16 | u32::from(port);
        let new: Vec<_> = want.difference(&self.node_ports).copied().collect();
        for p in new {
            self.maps
                .nodeports
                .update(&key(p), &1u8, || format!("NodePort {}/{}", p.0, p.1))?;
            self.node_ports.insert(p);
        }
        let stale: Vec<_> = self.node_ports.difference(&want).copied().collect();
        for p in stale {
            self.maps
                .nodeports
                .delete(&key(p), || format!("NodePort {}/{}", p.0, p.1))?;
            self.node_ports.remove(&p);
        }
        Ok(())
    }

    /// Frames the program takes on RX queue `queue` go to the AF_XDP socket
    /// `xsk_fd` (bound to that queue of this interface, see
    /// [`Port::xsk_fd`](super::Port::xsk_fd)). The map holds its own
    /// reference: closing the socket removes the entry.
    pub fn register_socket(&self, queue: u32, xsk_fd: RawFd) -> Result<(), UplinkError> {
        if queue >= MAX_QUEUES {
            return Err(UplinkError::Queue { queue });
        }
        self.maps.xsks.update(&queue, &(xsk_fd as u32), || {
            format!("AF_XDP socket fd {xsk_fd} for queue {queue}")
        })
    }

    /// Frames the program takes on `queue` go to the kernel again.
    pub fn unregister_socket(&self, queue: u32) -> Result<(), UplinkError> {
        if queue >= MAX_QUEUES {
            return Err(UplinkError::Queue { queue });
        }
        self.maps
            .xsks
            .delete(&queue, || format!("the AF_XDP socket of queue {queue}"))
    }

    fn insert_prefix(&mut self, (addr, len): (IpAddr, u8)) -> Result<(), UplinkError> {
        let what = || format!("prefix {addr}/{len}");
        match addr {
            IpAddr::V4(a) => self.maps.dst4.update(&lpm4(a, len), &1u8, what)?,
            IpAddr::V6(a) => self.maps.dst6.update(&lpm6(a, len), &1u8, what)?,
        }
        self.prefixes.insert((addr, len));
        Ok(())
    }

    fn delete_prefix(&mut self, (addr, len): (IpAddr, u8)) -> Result<(), UplinkError> {
        let what = || format!("prefix {addr}/{len}");
        match addr {
            IpAddr::V4(a) => self.maps.dst4.delete(&lpm4(a, len), what)?,
            IpAddr::V6(a) => self.maps.dst6.delete(&lpm6(a, len), what)?,
        }
        self.prefixes.remove(&(addr, len));
        Ok(())
    }
}

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

/// Opens and loads the embedded object (programs verified, maps created).
fn load() -> Result<Object, UplinkError> {
    // SAFETY: the options struct is plain data; all-zero means "defaults".
    // (Its last field ends the struct: there is no trailing padding for
    // libbpf's check of unknown bytes to trip on, unlike in `detach`.)
    let mut opts: bpf_object_open_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<bpf_object_open_opts>();
    opts.object_name = c"vswitch_uplink".as_ptr();
    // SAFETY: OBJECT is 'static; libbpf copies the name and reads the bytes
    // only during open and load.
    let obj = unsafe {
        libxdp_sys::bpf_object__open_mem(OBJECT.0.as_ptr().cast(), OBJECT.0.len(), &opts)
    };
    let obj = NonNull::new(obj)
        .map(Object)
        .ok_or_else(|| UplinkError::Open(io::Error::last_os_error()))?;
    // SAFETY: `obj` was just opened and is loaded once.
    let rc = unsafe { libxdp_sys::bpf_object__load(obj.0.as_ptr()) };
    if rc != 0 {
        return Err(UplinkError::Load(errno(rc)));
    }
    Ok(obj)
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

/// `addr/len` with the host bits cleared, or an error if `len` is too long.
fn network(addr: IpAddr, len: u8) -> Result<(IpAddr, u8), UplinkError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(UplinkError::PrefixLength { addr, len, max });
    }
    let net = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    };
    Ok((net, len))
}

fn lpm4(addr: Ipv4Addr, len: u8) -> Lpm4Key {
    Lpm4Key {
        prefixlen: u32::from(len),
        addr: addr.octets(),
    }
}

fn lpm6(addr: Ipv6Addr, len: u8) -> Lpm6Key {
    Lpm6Key {
        prefixlen: u32::from(len),
        addr: addr.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_lose_their_host_bits() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            network(ip("10.244.1.7"), 24).unwrap(),
            (ip("10.244.1.0"), 24)
        );
        assert_eq!(
            network(ip("10.244.1.7"), 32).unwrap(),
            (ip("10.244.1.7"), 32)
        );
        assert_eq!(network(ip("10.244.1.7"), 0).unwrap(), (ip("0.0.0.0"), 0));
        assert_eq!(
            network(ip("fd00::1:2"), 112).unwrap(),
            (ip("fd00::1:0"), 112)
        );
        assert_eq!(network(ip("fd00::1"), 0).unwrap(), (ip("::"), 0));
        assert!(matches!(
            network(ip("10.0.0.0"), 33),
            Err(UplinkError::PrefixLength { max: 32, .. })
        ));
        assert!(matches!(
            network(ip("fd00::"), 129),
            Err(UplinkError::PrefixLength { max: 128, .. })
        ));
    }

    #[test]
    fn map_keys_have_the_programs_layout() {
        // struct lpm4_key / lpm6_key in uplink.bpf.c; Map::find checks the
        // same against the loaded object, this catches it without root.
        assert_eq!(size_of::<Lpm4Key>(), 8);
        assert_eq!(size_of::<Lpm6Key>(), 20);
        assert_eq!(size_of::<ConfigValue>(), 8);
    }

    #[test]
    fn the_object_is_embedded() {
        assert_eq!(&OBJECT.0[..4], b"\x7fELF");
    }
}
