//! The next hop's MAC, as the kernel of the calling thread's namespace
//! knows it: routes from /proc/thread-self/net/route, neighbours from
//! /proc/thread-self/net/arp, ARP triggered by a datagram.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A route of the calling thread's namespace, from /proc/net/route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    dst: u32,
    mask: u32,
    gateway: u32,
}

/// An address as /proc/net/route prints it: the network-order word read as
/// a host-order integer.
fn hex_addr(s: &str) -> Option<u32> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(u32::from_be_bytes(v.to_ne_bytes()))
}

/// The IPv4 routes of `ifname` in /proc/net/route text.
fn parse_routes(text: &str, ifname: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[0] != ifname {
                return None;
            }
            Some(Route {
                dst: hex_addr(f[1])?,
                gateway: hex_addr(f[2])?,
                mask: hex_addr(f[7])?,
            })
        })
        .collect()
}

/// Whether `ifname` carries a default route of the calling thread's
/// namespace.
pub fn carries_default_route(ifname: &str) -> bool {
    std::fs::read_to_string("/proc/thread-self/net/route")
        .map(|t| has_default(&parse_routes(&t, ifname)))
        .unwrap_or(false)
}

fn has_default(routes: &[Route]) -> bool {
    routes.iter().any(|r| r.mask == 0)
}

/// The next hop toward `dst` among `routes` (longest prefix).
fn next_hop(routes: &[Route], dst: Ipv4Addr) -> Option<Ipv4Addr> {
    let d = u32::from(dst);
    let r = routes
        .iter()
        .filter(|r| d & r.mask == r.dst & r.mask)
        .max_by_key(|r| r.mask.count_ones())?;
    Some(if r.gateway == 0 {
        dst
    } else {
        Ipv4Addr::from(r.gateway)
    })
}

/// The MAC of `ip` in /proc/net/arp text, on `ifname`, if complete.
fn parse_arp(text: &str, ifname: &str, ip: Ipv4Addr) -> Option<[u8; 6]> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[5] != ifname || f[0].parse::<Ipv4Addr>().ok()? != ip {
            return None;
        }
        let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
        if flags & 0x2 == 0 {
            return None;
        }
        crate::parse_mac(f[3]).ok()
    })
}

/// The MAC frames to `dst` leave `ifname` with: the destination's own on
/// its link, else its gateway's, resolved by the kernel of the calling
/// thread's namespace (ARP, triggered by a datagram to the discard port).
pub fn resolve_mac(ifname: &str, dst: Ipv4Addr, timeout: Duration) -> anyhow::Result<[u8; 6]> {
    let routes_text = std::fs::read_to_string("/proc/thread-self/net/route")?;
    let hop = next_hop(&parse_routes(&routes_text, ifname), dst).ok_or_else(|| {
        anyhow::anyhow!(
            "no route to {dst} through '{ifname}' (give --dst-mac, or add an address or a route)"
        )
    })?;
    let deadline = Instant::now() + timeout;
    let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    loop {
        let arp = std::fs::read_to_string("/proc/thread-self/net/arp")?;
        if let Some(mac) = parse_arp(&arp, ifname, hop) {
            return Ok(mac);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "cannot resolve the MAC of {hop} (next hop to {dst}) on '{ifname}': no ARP reply within {:?}; give --dst-mac",
                timeout
            );
        }
        let _ = sock.send_to(&[0], (dst, 9));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101F40A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
lo\t0002F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn next_hop_is_the_gateway_or_the_destination() {
        let r = parse_routes(ROUTES, "eth0");
        assert_eq!(r.len(), 2);
        let on_link = Ipv4Addr::new(10, 244, 1, 12);
        assert_eq!(next_hop(&r, on_link), Some(on_link));
        assert_eq!(
            next_hop(&r, Ipv4Addr::new(10, 96, 0, 10)),
            Some(Ipv4Addr::new(10, 244, 1, 1))
        );
        assert_eq!(next_hop(&parse_routes(ROUTES, "eth9"), on_link), None);
        assert!(has_default(&parse_routes(ROUTES, "eth0")));
        assert!(!has_default(&parse_routes(ROUTES, "lo")));
    }

    #[test]
    fn arp_entries_need_the_complete_flag() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device
10.244.1.1       0x1         0x2         02:aa:bb:cc:dd:ee     *        eth0
10.244.1.12      0x1         0x0         00:00:00:00:00:00     *        eth0
";
        assert_eq!(
            parse_arp(arp, "eth0", Ipv4Addr::new(10, 244, 1, 1)),
            Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert_eq!(parse_arp(arp, "eth0", Ipv4Addr::new(10, 244, 1, 12)), None);
        assert_eq!(parse_arp(arp, "eth1", Ipv4Addr::new(10, 244, 1, 1)), None);
    }
}
