//! Small wrappers over the OS: interface lookup and configuration, network
//! namespaces, AF_XDP socket options. Nothing here runs per packet.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// Longest interface name Linux accepts.
pub const IFNAME_MAX: usize = 15;

/// Checks an interface name the way the kernel does (1–15 bytes, no '/',
/// no whitespace, not "." or "..").
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// The ifindex of `name` in the calling thread's namespace.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

/// Where a namespace given as a name or a path lives.
pub fn netns_path(ns: &str) -> PathBuf {
    if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        PathBuf::from("/run/netns").join(ns)
    }
}

/// Opens network namespace `ns`: a name under /run/netns, or an absolute
/// path such as /proc/PID/ns/net. Anything that is not a namespace file
/// (a FIFO, a device, a regular file) is refused without side effects:
/// the path is opened with `O_PATH` (which runs no open routine of a
/// device, and opens no FIFO), checked to be on nsfs, and only then
/// opened for use, through the `O_PATH` descriptor (the same file, even if
/// the path changed meanwhile).
pub fn open_netns(ns: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("network namespace '{ns}': {why}"),
        )
    };
    if ns.contains('/') {
        if !ns.starts_with('/') {
            return Err(invalid("a path must be absolute"));
        }
    } else if ns.is_empty()
        || ns == "."
        || ns == ".."
        || !ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(invalid("a name may hold letters, digits, '_', '.' and '-'"));
    }
    let path = netns_path(ns);
    let failed = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("network namespace '{ns}' ({}): {e}", path.display()),
        )
    };
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(&path)
        .map_err(failed)?;
    // SAFETY: statfs is plain data; fstatfs fills it for an open descriptor
    // (an O_PATH one included).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `handle` is open and `st` is valid for writes.
    if unsafe { libc::fstatfs(handle.as_raw_fd(), &mut st) } != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    if st.f_type as libc::c_long != NSFS_MAGIC {
        return Err(invalid(&format!(
            "{} is not a namespace file",
            path.display()
        )));
    }
    // setns needs a descriptor opened for real; this one names the file
    // checked above whatever the path names now.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .map_err(failed)?;
    // NS_GET_NSTYPE (linux/nsfs.h: _IO(0xb7, 0x3)).
    const NS_GET_NSTYPE: libc::Ioctl = 0xb703;
    // SAFETY: an ioctl without argument on an open nsfs descriptor.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if kind != libc::CLONE_NEWNET {
        return Err(invalid(&format!(
            "{} is not a network namespace",
            path.display()
        )));
    }
    Ok(file)
}

/// Puts the calling thread into network namespace `ns` (a name under
/// /run/netns or an absolute path) for the rest of its life or until it
/// enters another; the process's other threads stay where they are.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    setns(&open_netns(ns)?, ns)
}

/// Moves the calling thread into the namespace `file` (opened as `ns`).
fn setns(file: &File, ns: &str) -> io::Result<()> {
    // SAFETY: `file` is an open namespace descriptor; setns changes only the
    // namespace of the calling thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot enter network namespace '{ns}': {e}"),
        ));
    }
    Ok(())
}

/// Runs `f` on a fresh thread that has entered network namespace `ns`.
/// Descriptors `f` creates (a TAP, a socket) keep working after the thread
/// ends, bound to that namespace.
pub fn in_netns<T, F>(ns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let file = open_netns(ns)?;
    let ns = ns.to_string();
    std::thread::Builder::new()
        .name("vswitch-netns".into())
        .spawn(move || {
            // Only this short-lived, single-purpose thread moves.
            setns(&file, &ns)?;
            f()
        })?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// The `tx_dropped` count of interface `ifname` in network namespace
/// `netns` (ours when `None`): for a TAP, the frames the kernel dropped
/// before the switch read them (its queue was full), read from
/// /proc/net/dev as that namespace sees it.
pub fn tx_dropped(netns: Option<&str>, ifname: &str) -> io::Result<u64> {
    let name = ifname.to_string();
    let read = move || {
        // The calling thread's namespace, not the process's.
        let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
        dev_tx_dropped(&text, &name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no interface '{name}'"))
        })
    };
    match netns {
        Some(ns) => in_netns(ns, read),
        None => read(),
    }
}

/// The transmit `drop` column of `name`'s line in /proc/net/dev's format
/// (after the colon: 8 receive counters, then bytes, packets, errs, drop).
fn dev_tx_dropped(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (n, counters) = line.split_once(':')?;
        if n.trim() != name {
            return None;
        }
        counters.split_whitespace().nth(11)?.parse().ok()
    })
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if !valid_ifname(name) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name '{name}'"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(
    sock: &OwnedFd,
    op: libc::c_ulong,
    req: &mut libc::ifreq,
    what: &str,
    name: &str,
) -> io::Result<()> {
    // SAFETY: `req` is a valid ifreq for this request and outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), op as _, req as *mut libc::ifreq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what} on '{name}': {e}")));
    }
    Ok(())
}

/// Sets the MAC of interface `name` (if given) and brings it up, in the
/// calling thread's namespace.
pub fn configure_link(name: &str, mac: Option<[u8; 6]>) -> io::Result<()> {
    let sock = ctl_socket()?;
    if let Some(mac) = mac {
        let mut req = ifreq(name)?;
        // SAFETY: writing the hwaddr member of the union, which this request uses.
        unsafe {
            req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, s) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
                *d = s as libc::c_char;
            }
        }
        ioctl(&sock, libc::SIOCSIFHWADDR, &mut req, "set MAC", name)?;
    }
    change_if_flags(name, libc::IFF_UP as libc::c_short, 0, "set up")
}

/// The flags (`IFF_*`) of interface `name`.
pub fn if_flags(name: &str) -> io::Result<libc::c_short> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req, "get flags", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// Sets flags `set` and clears flags `clear` (`IFF_*`) of interface `name`;
/// `what` names the change in the error.
pub fn change_if_flags(
    name: &str,
    set: libc::c_short,
    clear: libc::c_short,
    what: &str,
) -> io::Result<()> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req, "get flags", name)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe { req.ifr_ifru.ifru_flags = (req.ifr_ifru.ifru_flags | set) & !clear };
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut req, what, name)
}

/// The kernel's counters of an AF_XDP socket, in `struct xdp_statistics`
/// order: rx_dropped, rx_invalid_descs, tx_invalid_descs, rx_ring_full,
/// rx_fill_ring_empty_descs, tx_ring_empty_descs.
pub fn xsk_statistics(fd: RawFd) -> Option<[u64; 6]> {
    let mut stats = [0u64; 6];
    let mut len = std::mem::size_of_val(&stats) as libc::socklen_t;
    // SAFETY: `stats` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            stats.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(stats)
}

/// Checks that this kernel (and our privileges) allow AF_XDP sockets.
pub fn af_xdp_available() -> Result<(), String> {
    // SAFETY: plain socket(2) call; the result is checked and closed.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "AF_XDP is unavailable: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is a descriptor we just opened and own.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// How many RX queues interface `name` (in this namespace) has, from
/// sysfs; `None` if it cannot be read.
pub fn rx_queues(name: &str) -> Option<u32> {
    if !valid_ifname(name) {
        return None;
    }
    let dir = std::fs::read_dir(format!("/sys/class/net/{name}/queues")).ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
        .count();
    Some(n as u32)
}

/// Sets or clears TUNSETPERSIST on a TAP descriptor.
pub fn set_tap_persist(fd: RawFd, persist: bool) -> io::Result<()> {
    // _IOW('T', 203, int) from linux/if_tun.h.
    const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
    // SAFETY: TUNSETPERSIST takes its argument by value; `fd` is a TAP.
    let rc = unsafe { libc::ioctl(fd, TUNSETPERSIST as _, libc::c_ulong::from(persist)) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens TAP device `name` (creating it if it does not exist) without
/// packet information, non-blocking; with `vnet_hdr`, every frame read or
/// written is preceded by a `virtio_net_hdr` (`IFF_VNET_HDR`). With
/// `multi_queue`, the device is multi-queue (`IFF_MULTI_QUEUE`) and each
/// call attaches one more queue.
///
/// Raw ioctls rather than the `tun-tap` crate: that crate cannot ask for
/// `IFF_VNET_HDR` nor set offloads.
pub fn tap_open(name: &str, vnet_hdr: bool, multi_queue: bool) -> io::Result<OwnedFd> {
    // _IOW('T', 202, int) from linux/if_tun.h.
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    let mut req = ifreq(name)?;
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: plain open(2) of a constant NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is a valid ifreq for TUNSETIFF and outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Tells a TAP what its reader takes: with `on` (a TAP opened with a
/// virtio-net header), partial checksums, TSO over IPv4 and IPv6 (with ECN)
/// and, where the kernel has it (6.2 on), USO; without, nothing (the pod's
/// stack then checksums and segments everything itself). Returns whether
/// USO is on.
pub fn tap_set_offload(fd: RawFd, on: bool) -> io::Result<bool> {
    // _IOW('T', 208, unsigned int) and the TUN_F_* bits from linux/if_tun.h.
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    const CSUM: libc::c_ulong = 0x01;
    const TSO4: libc::c_ulong = 0x02;
    const TSO6: libc::c_ulong = 0x04;
    const TSO_ECN: libc::c_ulong = 0x08;
    const USO4: libc::c_ulong = 0x20;
    const USO6: libc::c_ulong = 0x40;
    let tcp = CSUM | TSO4 | TSO6 | TSO_ECN;
    if !on {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; `fd` is a TAP.
        if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, 0 as libc::c_ulong) } == 0 {
            return Ok(false);
        }
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value; `fd` is a TAP.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, tcp | USO4 | USO6) } == 0 {
        return Ok(true);
    }
    // SAFETY: as above.
    if unsafe { libc::ioctl(fd, TUNSETOFFLOAD as _, tcp) } == 0 {
        return Ok(false);
    }
    Err(io::Error::last_os_error())
}

/// Whether an AF_XDP socket runs in zero-copy mode.
pub fn xsk_zero_copy(fd: RawFd) -> bool {
    #[repr(C)]
    struct XdpOptions {
        flags: u32,
    }
    let mut opts = XdpOptions { flags: 0 };
    let mut len = std::mem::size_of::<XdpOptions>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&mut opts as *mut XdpOptions).cast(),
            &mut len,
        )
    };
    rc == 0 && opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0
}

unsafe extern "C" {
    // libbpf is linked in through libxdp-sys, whose bindings omit this.
    fn libbpf_set_print(f: Option<LibPrintFn>) -> Option<LibPrintFn>;
}

type LibPrintFn =
    unsafe extern "C" fn(libc::c_int, *const libc::c_char, *mut libc::c_void) -> libc::c_int;

unsafe extern "C" fn quiet(
    _: libc::c_int,
    _: *const libc::c_char,
    _: *mut libc::c_void,
) -> libc::c_int {
    0
}

unsafe extern "C" fn quiet_libxdp_print(
    _: libxdp_sys::libxdp_print_level,
    _: *const libc::c_char,
    _: *mut libxdp_sys::__va_list_tag,
) -> libc::c_int {
    0
}

/// Silences libbpf's and libxdp's own messages on stderr (for example the
/// notice that the multi-program dispatcher is unavailable and a single
/// program is loaded instead). Attach failures still reach the user through
/// our errors. Set `VSWITCH_LIBXDP_LOG=1` to keep the libraries' messages.
pub fn quiet_libxdp() {
    if std::env::var_os("VSWITCH_LIBXDP_LOG").is_some() {
        return;
    }
    // SAFETY: both setters only store the callback pointer; the callbacks
    // match the C signatures (level, format, va_list) and ignore their arguments.
    unsafe {
        libbpf_set_print(Some(quiet));
        libxdp_sys::libxdp_set_print(Some(quiet_libxdp_print));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(valid_ifname("eth0"));
        assert!(valid_ifname("a-very-long-nam"));
        assert!(!valid_ifname("a-very-long-name"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname(".."));
    }

    #[test]
    fn only_namespace_files_are_opened_as_namespaces() {
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir().join(format!("vswitch-netns-{}", std::process::id()));
        // A directory of an earlier run whose process had this pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; creates a FIFO.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // A writer waits in open(2) until someone opens the FIFO to read:
        // refusing it as a namespace must not be that someone.
        let (tx, rx) = std::sync::mpsc::channel();
        let w = fifo.clone();
        let writer = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&w);
            tx.send(()).unwrap();
            f.map(drop)
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        let e = open_netns(fifo.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("is not a namespace file"), "{e}");
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "the FIFO was opened for reading"
        );
        // Let the writer go.
        let r = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        writer.join().unwrap().unwrap();
        drop(r);
        // A character device and a regular file: refused the same way.
        for p in ["/dev/null", fifo.to_str().unwrap(), "/proc/self/status"] {
            let e = open_netns(p).unwrap_err();
            assert!(
                e.to_string().contains("is not a namespace file"),
                "{p}: {e}"
            );
        }
        // Another kind of namespace: refused.
        let e = open_netns("/proc/self/ns/mnt").unwrap_err();
        assert!(e.to_string().contains("not a network namespace"), "{e}");
        // A network namespace: opened, the one named.
        let ns = open_netns("/proc/self/ns/net").unwrap();
        let want = std::fs::metadata("/proc/self/ns/net").unwrap();
        let got = ns.metadata().unwrap();
        assert_eq!((got.dev(), got.ino()), (want.dev(), want.ino()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn netns_paths() {
        assert_eq!(netns_path("pod1"), PathBuf::from("/run/netns/pod1"));
        assert_eq!(
            netns_path("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
    }

    #[test]
    fn tx_drops_from_proc_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0: 5000      40    1    2    0     0          0         0     7000      50    3  417    0     0       0          0\n";
        assert_eq!(dev_tx_dropped(text, "eth0"), Some(417));
        assert_eq!(dev_tx_dropped(text, "lo"), Some(0));
        assert_eq!(dev_tx_dropped(text, "eth"), None);
        assert!(tx_dropped(None, "lo").is_ok());
        assert!(tx_dropped(None, "no-such-if0").is_err());
    }

    #[test]
    fn loopback_exists() {
        assert!(if_index("lo").is_some());
        assert!(if_index("no-such-if0").is_none());
    }
}

/// The MTU of interface `name` in the calling thread's namespace.
pub fn mtu(name: &str) -> io::Result<u32> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl(&sock, libc::SIOCGIFMTU, &mut req, "get MTU", name)?;
    // SAFETY: SIOCGIFMTU filled the mtu member.
    let m = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(m).unwrap_or(0))
}

/// The MAC address of interface `name` in the calling thread's namespace.
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    let sock = ctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl(&sock, libc::SIOCGIFHWADDR, &mut req, "get MAC", name)?;
    let mut mac = [0u8; 6];
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    Ok(mac)
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub ifname: String,
    pub addr: std::net::IpAddr,
    pub prefix_len: u8,
}

/// Every IPv4 and IPv6 address of the calling thread's namespace.
pub fn if_addrs() -> io::Result<Vec<IfAddr>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head that we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs; its address pointers are null or point to
        // sockaddrs of the family they announce.
        unsafe {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let family = i32::from((*ifa.ifa_addr).sa_family);
            let (addr, prefix_len) = if family == libc::AF_INET {
                let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                let len = if ifa.ifa_netmask.is_null() {
                    32
                } else {
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    u32::from_be(m.sin_addr.s_addr).count_ones() as u8
                };
                (IpAddr::V4(ip), len)
            } else if family == libc::AF_INET6 {
                let a = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let len = if ifa.ifa_netmask.is_null() {
                    128
                } else {
                    let m = &*(ifa.ifa_netmask as *const libc::sockaddr_in6);
                    u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8
                };
                (IpAddr::V6(ip), len)
            } else {
                continue;
            };
            out.push(IfAddr {
                ifname: name,
                addr,
                prefix_len,
            });
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}
