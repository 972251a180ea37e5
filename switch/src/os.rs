//! OS calls only the daemon makes: the host port's kernel routes
//! (rtnetlink), the uplink's promiscuous mode, what kind of interface a
//! port is. The data plane's own OS
//! wrappers (interfaces, namespaces, AF_XDP) are in `fastpath::sys`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use fastpath::sys;

/// Whether interface `name` (in the daemon's namespace) is virtual, a
/// veth for example: it has no device behind it in sysfs.
pub fn is_virtual(name: &str) -> bool {
    let net = std::path::Path::new("/sys/class/net").join(name);
    net.exists() && !net.join("device").exists()
}

/// Whether interface `name` is in promiscuous mode.
pub fn is_promisc(name: &str) -> io::Result<bool> {
    Ok(sys::if_flags(name)? & libc::IFF_PROMISC as libc::c_short != 0)
}

/// Turns promiscuous mode of interface `name` on or off.
pub fn set_promisc(name: &str, on: bool) -> io::Result<()> {
    let flag = libc::IFF_PROMISC as libc::c_short;
    let (set, clear) = if on { (flag, 0) } else { (0, flag) };
    sys::change_if_flags(name, set, clear, "set promiscuous mode")
}

/// Adds or replaces (`add`) or deletes a kernel route `dst/len dev ifindex`
/// (scope link) in the calling thread's namespace, through rtnetlink.
pub fn kernel_route(add: bool, dst: std::net::IpAddr, len: u8, ifindex: u32) -> io::Result<()> {
    use std::net::IpAddr;
    let (family, addr): (u8, Vec<u8>) = match dst {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    // nlmsghdr (16) + rtmsg (12) + RTA_DST + RTA_OIF, all 4-byte aligned.
    let mut msg: Vec<u8> = Vec::with_capacity(64);
    let flags = libc::NLM_F_REQUEST
        | libc::NLM_F_ACK
        | if add {
            libc::NLM_F_CREATE | libc::NLM_F_REPLACE
        } else {
            0
        };
    let kind = if add {
        libc::RTM_NEWROUTE
    } else {
        libc::RTM_DELROUTE
    };
    msg.extend_from_slice(&0u32.to_ne_bytes()); // length, patched below
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(&(flags as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
    msg.extend_from_slice(&[
        family,
        len,
        0,
        0,
        libc::RT_TABLE_MAIN,
        libc::RTPROT_STATIC,
        libc::RT_SCOPE_LINK,
        libc::RTN_UNICAST,
    ]);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    let mut attr = |kind: u16, data: &[u8]| {
        let alen = 4 + data.len();
        msg.extend_from_slice(&(alen as u16).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(data);
        msg.resize(msg.len().next_multiple_of(4), 0);
    };
    attr(libc::RTA_DST, &addr);
    attr(libc::RTA_OIF, &ifindex.to_ne_bytes());
    let total = msg.len() as u32;
    msg[..4].copy_from_slice(&total.to_ne_bytes());

    // SAFETY: plain socket creation; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `msg` and `kernel` are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // The acknowledgement is an NLMSG_ERROR whose error code 0 means success.
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(())
}
