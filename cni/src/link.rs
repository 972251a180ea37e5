//! Links, addresses and routes, in the host's namespace or a pod's, with
//! rtnetlink. Each call runs on a short-lived thread that enters the
//! namespace first (a netlink socket works in the namespace it was opened
//! in; the plugin's own thread never moves), with a one-thread tokio
//! runtime for rtnetlink.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::spec::{Error, Route, code};

/// Opens the network namespace file `path` (`CNI_NETNS`), refusing
/// anything that is not one without running its open routine (a FIFO, a
/// device): fastpath's checked open, which vswitchd uses too.
pub fn open_netns(path: &str) -> Result<File, Error> {
    fastpath::sys::open_netns(path).map_err(|e| {
        Error::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {path}: cannot use it"),
        )
        .with_details(e.to_string())
    })
}

/// Runs `f` with a netlink handle in `ns` (None: the host's namespace).
fn netlink<T, F, Fut>(ns: Option<&File>, what: &str, f: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let fail =
        |details: String| Error::new(code::LINK, format!("cannot {what}")).with_details(details);
    let ns_fd = ns.map(AsRawFd::as_raw_fd);
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some(fd) = ns_fd {
                // SAFETY: `fd` is a namespace file held open by the caller
                // until this scoped thread is joined; setns changes only
                // this thread's namespace.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(fail(format!(
                        "entering the namespace: {}",
                        std::io::Error::last_os_error()
                    )));
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| fail(e.to_string()))?;
            rt.block_on(async {
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(|e| fail(e.to_string()))?;
                tokio::spawn(conn);
                f(handle).await.map_err(|e| fail(describe(&e)))
            })
        })
        .join()
        .unwrap_or_else(|_| Err(fail("the netlink thread panicked".to_string())))
    })
}

/// The kernel's errno of a refused request.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// The index of `name`, or None when there is no such link.
async fn index(h: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a link called `name` exists in `ns`.
pub fn exists(ns: Option<&File>, name: &str) -> Result<bool, Error> {
    let name = name.to_string();
    netlink(ns, &format!("look up {name}"), |h| async move {
        Ok(index(&h, &name).await?.is_some())
    })
}

/// Deletes the link `name` in `ns`; false when there was none.
pub fn delete(ns: Option<&File>, name: &str) -> Result<bool, Error> {
    let name = name.to_string();
    netlink(ns, &format!("delete {name}"), |h| async move {
        let Some(idx) = index(&h, &name).await? else {
            return Ok(false);
        };
        match h.link().del(idx).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    })
}

/// Creates the veth pair `host` ↔ `peer` in the host's namespace, moves
/// `peer` into `ns` as `ifname`, and sets the host end's MTU and brings it
/// up. A pair it made is removed again when a later step fails; a name
/// taken by someone else's link is an error that removes nothing.
pub fn create_veth(host: &str, peer: &str, ns: &File, ifname: &str, mtu: u32) -> Result<(), Error> {
    let (host, peer, ifname) = (host.to_string(), peer.to_string(), ifname.to_string());
    let ns_fd = ns.as_raw_fd();
    let (h2, p2) = (host.clone(), peer.clone());
    netlink(
        None,
        &format!("create the veth pair {host}"),
        |h| async move {
            h.link()
                .add(LinkVeth::new(&h2, &p2).mtu(mtu).build())
                .execute()
                .await
        },
    )?;
    let made = netlink(
        None,
        &format!("move {peer} into the pod as {ifname}"),
        |h| {
            let host = host.clone();
            async move {
                let peer_idx = index(&h, &peer)
                    .await?
                    .ok_or(rtnetlink::Error::RequestFailed)?;
                h.link()
                    .set(
                        LinkUnspec::new_with_index(peer_idx)
                            .setns_by_fd(ns_fd)
                            .name(ifname)
                            .build(),
                    )
                    .execute()
                    .await?;
                let host_idx = index(&h, &host)
                    .await?
                    .ok_or(rtnetlink::Error::RequestFailed)?;
                h.link()
                    .set(LinkUnspec::new_with_index(host_idx).up().build())
                    .execute()
                    .await
            }
        },
    );
    if made.is_err() {
        let _ = delete(None, &host);
    }
    made
}

/// What the pod's interface is to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfConfig {
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub addrs: Vec<IpNet>,
    pub routes: Vec<Route>,
}

/// Gives `ifname` in `ns` its MAC, MTU, addresses (IPv6 ones without
/// duplicate address detection: the switch's port security already makes
/// the address the pod's alone) and routes, and brings it up.
pub fn configure(ns: &File, ifname: &str, cfg: &IfConfig) -> Result<(), Error> {
    let (ifname, cfg) = (ifname.to_string(), cfg.clone());
    netlink(
        Some(ns),
        &format!("configure {ifname} in the pod"),
        |h| async move {
            let idx = index(&h, &ifname)
                .await?
                .ok_or(rtnetlink::Error::RequestFailed)?;
            let mut link = LinkUnspec::new_with_index(idx).mtu(cfg.mtu);
            if let Some(mac) = cfg.mac {
                link = link.address(mac.to_vec());
            }
            h.link().set(link.build()).execute().await?;
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await?;
            for a in &cfg.addrs {
                let mut req = h.address().add(idx, a.addr(), a.prefix_len());
                if a.addr().is_ipv6() {
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
                req.execute().await?;
            }
            for r in &cfg.routes {
                h.route().add(route_message(r, idx)?).execute().await?;
            }
            Ok(())
        },
    )
}

fn route_message(r: &Route, oif: u32) -> Result<RouteMessage, rtnetlink::Error> {
    let invalid = |e: &dyn std::fmt::Display| rtnetlink::Error::InvalidNla(e.to_string());
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.addr(), r.dst.prefix_len())
        .map_err(|e| invalid(&e))?
        .output_interface(oif);
    if let Some(gw) = r.gw {
        b = b.gateway(gw).map_err(|e| invalid(&e))?;
    }
    Ok(b.build())
}

/// What an interface holds, for CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfState {
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    pub up: bool,
    pub addrs: Vec<IpNet>,
    /// Routes through the interface (main table).
    pub routes: Vec<Route>,
}

/// The state of `ifname` in `ns`, or None when it does not exist.
pub fn inspect(ns: &File, ifname: &str) -> Result<Option<IfState>, Error> {
    let ifname = ifname.to_string();
    netlink(
        Some(ns),
        &format!("inspect {ifname} in the pod"),
        |h| async move {
            let link: LinkMessage = match h
                .link()
                .get()
                .match_name(ifname.clone())
                .execute()
                .try_next()
                .await
            {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(None),
                Err(e) if errno(&e) == Some(libc::ENODEV) => return Ok(None),
                Err(e) => return Err(e),
            };
            let idx = link.header.index;
            let mut st = IfState {
                mac: None,
                mtu: 0,
                up: link.header.flags.contains(LinkFlags::Up),
                addrs: Vec::new(),
                routes: Vec::new(),
            };
            for a in &link.attributes {
                match a {
                    LinkAttribute::Address(m) if m.len() == 6 => {
                        st.mac = Some(m.as_slice().try_into().expect("6 bytes"));
                    }
                    LinkAttribute::Mtu(m) => st.mtu = *m,
                    _ => {}
                }
            }
            let mut addrs = h.address().get().set_link_index_filter(idx).execute();
            while let Some(m) = addrs.try_next().await? {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
                if let Some(net) = ip.and_then(|ip| IpNet::new(ip, m.header.prefix_len).ok()) {
                    st.addrs.push(net);
                }
            }
            for family in [AddressFamily::Inet, AddressFamily::Inet6] {
                let mut query = RouteMessageBuilder::<IpAddr>::new().build();
                query.header.address_family = family;
                let mut routes = h.route().get(query).execute();
                while let Some(m) = routes.try_next().await? {
                    if let Some(r) = route_of(&m, idx) {
                        st.routes.push(r);
                    }
                }
            }
            Ok(Some(st))
        },
    )
}

/// The route `m` if it goes out through `oif`.
fn route_of(m: &RouteMessage, oif: u32) -> Option<Route> {
    let mut dst = None;
    let mut gw = None;
    let mut out = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = addr(d),
            RouteAttribute::Gateway(g) => gw = addr(g),
            RouteAttribute::Oif(i) => out = Some(*i),
            _ => {}
        }
    }
    // The main table only (the dump holds the local table's too).
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table));
    if out != Some(oif) || table != u32::from(libc::RT_TABLE_MAIN) {
        return None;
    }
    let len = m.header.destination_prefix_length;
    let dst = match dst {
        Some(d) => IpNet::new(d, len).ok()?,
        None if m.header.address_family == AddressFamily::Inet6 => {
            IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok()?
        }
        None => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok()?,
    };
    Some(Route {
        dst,
        gw,
        extra: Default::default(),
    })
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

/// The MTU of `name` in the host's namespace, from sysfs.
pub fn host_mtu(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The MAC of `name` in the host's namespace, from sysfs.
pub fn host_mac(name: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}
