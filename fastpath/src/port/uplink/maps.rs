//! The program's maps and what [`UplinkProgram`] writes into them: typed
//! access to each map (sizes checked against the loaded object), the key
//! layouts the program reads, and the router MAC, prefixes, VXLAN
//! addresses, NodePorts and sockets the switch serves.
//!
//! Invariants: a map is written only with the key and value types whose
//! sizes [`Map::find`] checked, since the kernel reads exactly the map's
//! sizes from the pointers passed. Every change is made in the map first
//! and recorded in `UplinkProgram`'s sets only once it succeeded, so the
//! sets always hold what the maps hold; `set_*` calls add before they
//! remove, so traffic never falls to the kernel in between.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::ptr;

use super::object::Object;
use super::{MAX_QUEUES, UplinkError, UplinkProgram};

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
pub(super) struct Maps {
    xsks: Map,
    config: Map,
    dst4: Map,
    dst6: Map,
    vxlan4: Map,
    nodeports: Map,
}

impl Maps {
    /// Finds every map of the loaded object `obj`, each checked against
    /// the key and value types vswitchd writes to it.
    pub(super) fn find(obj: &Object) -> Result<Maps, UplinkError> {
        Ok(Maps {
            xsks: Map::find::<u32, u32>(obj, "xsks_map")?,
            config: Map::find::<u32, ConfigValue>(obj, "config")?,
            dst4: Map::find::<Lpm4Key, u8>(obj, "dst4")?,
            dst6: Map::find::<Lpm6Key, u8>(obj, "dst6")?,
            vxlan4: Map::find::<[u8; 4], u8>(obj, "vxlan4")?,
            nodeports: Map::find::<u32, u8>(obj, "nodeports")?,
        })
    }
}

impl UplinkProgram {
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
    /// [`Port::xsk_fd`](crate::port::Port::xsk_fd)). The map holds its own
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
}
