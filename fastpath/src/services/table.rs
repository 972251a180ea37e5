//! Services as the data plane sees them: VIP:PORT/PROTO → endpoints, with
//! each Service's Maglev table built by the controller.
//!
//! The [`ServiceTable`] is part of the snapshot. The controller keeps one
//! `Arc<Service>` per Service and rebuilds only the Service that changed,
//! so one endpoint change on a switch holding thousands of Services costs
//! one Maglev table, not thousands; workers go on using the previous
//! snapshot until the new one is published.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::services::maglev;

/// IP protocol numbers Services are offered for.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A Service port packed into one word: VIP, port, protocol.
#[inline]
pub fn service_key(vip: u32, port: u16, proto: u8) -> u64 {
    u64::from(vip) << 24 | u64::from(port) << 8 | u64::from(proto)
}

/// A NodePort packed: protocol and port.
#[inline]
pub fn node_port_key(port: u16, proto: u8) -> u32 {
    u32::from(proto) << 16 | u32::from(port)
}

/// An endpoint (IPv4 address and port) packed into one word.
#[inline]
pub fn endpoint(ip: u32, port: u16) -> u64 {
    u64::from(ip) << 16 | u64::from(port)
}

/// The address and port of a packed endpoint.
#[inline]
pub fn endpoint_parts(e: u64) -> (u32, u16) {
    ((e >> 16) as u32, e as u16)
}

/// Source of [`Service::id`]s.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One Service port with its endpoints.
#[derive(Debug, Clone)]
pub struct Service {
    /// Unique for every `Service` built in this process: a flow checked
    /// against this exact version need not be checked again (see
    /// `Conntrack::cached_orig`).
    pub id: u64,
    pub vip: u32,
    pub port: u16,
    pub proto: u8,
    pub node_port: Option<u16>,
    /// ClientIP affinity timeout in milliseconds (`None`: no affinity).
    pub affinity_ms: Option<u64>,
    /// Ready endpoints, as configured.
    pub ready: Vec<u64>,
    /// Terminating endpoints, as configured.
    pub terminating: Vec<u64>,
    /// Every listed endpoint (ready or terminating), sorted: an
    /// established flow keeps its endpoint while it is listed here.
    listed: Vec<u64>,
    /// The endpoints new flows go to: the ready ones, or the terminating
    /// ones while none is ready.
    pub lookup: Vec<u64>,
    /// Maglev table over `lookup` (empty when `lookup` is).
    pub maglev: Box<[u16]>,
    /// Size the Maglev table has (or would have, when empty).
    pub table_size: u32,
}

impl Service {
    /// Builds a Service and its Maglev table. `min_size` is the smallest
    /// table size (the table has at least 100 slots per endpoint).
    pub fn new(
        vip: u32,
        port: u16,
        proto: u8,
        ready: Vec<u64>,
        terminating: Vec<u64>,
        min_size: u32,
    ) -> Self {
        let mut listed: Vec<u64> = ready.iter().chain(&terminating).copied().collect();
        listed.sort_unstable();
        listed.dedup();
        let lookup = if ready.is_empty() {
            terminating.clone()
        } else {
            ready.clone()
        };
        let table_size = maglev::table_size(lookup.len(), min_size);
        let names: Vec<Vec<u8>> = lookup.iter().map(|e| e.to_be_bytes().to_vec()).collect();
        let maglev = maglev::build(&names, table_size);
        Service {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            vip,
            port,
            proto,
            node_port: None,
            affinity_ms: None,
            ready,
            terminating,
            listed,
            lookup,
            maglev,
            table_size,
        }
    }

    /// The packed key of this Service.
    #[inline]
    pub fn key(&self) -> u64 {
        service_key(self.vip, self.port, self.proto)
    }

    /// Whether `e` is listed (ready or terminating).
    #[inline]
    pub fn is_listed(&self, e: u64) -> bool {
        self.listed.binary_search(&e).is_ok()
    }

    /// Whether new flows may go to `e`.
    #[inline]
    pub fn takes_new_flows(&self, e: u64) -> bool {
        self.lookup.contains(&e)
    }

    /// The endpoint Maglev picks for a flow hash, if there is any.
    #[inline]
    pub fn pick(&self, hash: u64) -> Option<u64> {
        if self.maglev.is_empty() {
            return None;
        }
        let slot = (hash % self.maglev.len() as u64) as usize;
        self.lookup.get(usize::from(self.maglev[slot])).copied()
    }
}

/// Every Service, indexed the ways the data plane looks them up.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    by_key: FxHashMap<u64, Arc<Service>>,
    /// Every VIP with its Service ports (usually one to a few): one lookup
    /// both says that a destination is a VIP and finds its Service.
    by_vip: FxHashMap<u32, Vec<Arc<Service>>>,
    by_node_port: FxHashMap<u32, Arc<Service>>,
    /// Endpoint addresses with how many Service endpoints use each: a
    /// packet from any other address cannot be a reply to a Service flow.
    backend_ips: FxHashMap<u32, u32>,
}

impl ServiceTable {
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The Service at VIP:PORT/PROTO.
    #[inline]
    pub fn get(&self, vip: u32, port: u16, proto: u8) -> Option<&Arc<Service>> {
        self.by_key.get(&service_key(vip, port, proto))
    }

    /// The Service with this NodePort.
    #[inline]
    pub fn node_port(&self, port: u16, proto: u8) -> Option<&Arc<Service>> {
        self.by_node_port.get(&node_port_key(port, proto))
    }

    /// Whether some Service has this VIP.
    #[inline]
    pub fn is_vip(&self, ip: u32) -> bool {
        self.by_vip.contains_key(&ip)
    }

    /// For a destination: `None` if it is no VIP, else the Service at that
    /// port and protocol, if there is one.
    #[inline]
    pub fn front(&self, ip: u32, port: u16, proto: u8) -> Option<Option<&Arc<Service>>> {
        let svcs = self.by_vip.get(&ip)?;
        Some(svcs.iter().find(|s| s.port == port && s.proto == proto))
    }

    /// Whether some Service lists this endpoint address.
    #[inline]
    pub fn is_backend(&self, ip: u32) -> bool {
        self.backend_ips.contains_key(&ip)
    }

    /// Whether any Service has a NodePort.
    #[inline]
    pub fn has_node_ports(&self) -> bool {
        !self.by_node_port.is_empty()
    }

    /// Every NodePort as (port, protocol).
    pub fn node_ports(&self) -> impl Iterator<Item = (u16, u8)> + '_ {
        self.by_node_port
            .values()
            .map(|s| (s.node_port.unwrap_or(0), s.proto))
    }

    /// Every Service, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_key.values()
    }

    /// Adds or replaces a Service.
    pub fn insert(&mut self, svc: Arc<Service>) {
        self.remove(svc.key());
        self.by_vip
            .entry(svc.vip)
            .or_default()
            .push(Arc::clone(&svc));
        for &e in &svc.listed {
            *self.backend_ips.entry(endpoint_parts(e).0).or_default() += 1;
        }
        if let Some(np) = svc.node_port {
            self.by_node_port
                .insert(node_port_key(np, svc.proto), Arc::clone(&svc));
        }
        self.by_key.insert(svc.key(), svc);
    }

    /// Removes the Service with this packed key; returns it.
    pub fn remove(&mut self, key: u64) -> Option<Arc<Service>> {
        let svc = self.by_key.remove(&key)?;
        if let Some(list) = self.by_vip.get_mut(&svc.vip) {
            list.retain(|s| s.key() != key);
            if list.is_empty() {
                self.by_vip.remove(&svc.vip);
            }
        }
        for &e in &svc.listed {
            release(&mut self.backend_ips, endpoint_parts(e).0);
        }
        if let Some(np) = svc.node_port {
            self.by_node_port.remove(&node_port_key(np, svc.proto));
        }
        Some(svc)
    }
}

fn release(counts: &mut FxHashMap<u32, u32>, k: u32) {
    if let Some(c) = counts.get_mut(&k) {
        *c -= 1;
        if *c == 0 {
            counts.remove(&k);
        }
    }
}

/// The set of VIPs (for the uplink's XDP program and kernel routes).
pub fn vips(table: &ServiceTable) -> FxHashSet<u32> {
    table.by_vip.keys().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIP: u32 = 0x0a60_000a;

    fn ep(last: u8, port: u16) -> u64 {
        endpoint(0x0af4_0100 | u32::from(last), port)
    }

    #[test]
    fn lookup_prefers_ready_and_falls_back_to_terminating() {
        let s = Service::new(VIP, 80, PROTO_TCP, vec![ep(2, 80)], vec![ep(3, 80)], 251);
        assert!(s.is_listed(ep(2, 80)) && s.is_listed(ep(3, 80)));
        assert!(!s.is_listed(ep(4, 80)));
        assert!(s.takes_new_flows(ep(2, 80)) && !s.takes_new_flows(ep(3, 80)));
        for h in 0..1000 {
            assert_eq!(s.pick(h), Some(ep(2, 80)));
        }
        let t = Service::new(VIP, 80, PROTO_TCP, vec![], vec![ep(3, 80)], 251);
        assert_eq!(t.pick(12345), Some(ep(3, 80)));
        let none = Service::new(VIP, 80, PROTO_TCP, vec![], vec![], 251);
        assert_eq!(none.pick(1), None);
    }

    #[test]
    fn table_indexes_follow_inserts_and_removals() {
        let mut t = ServiceTable::default();
        let mut a = Service::new(VIP, 80, PROTO_TCP, vec![ep(2, 80)], vec![], 251);
        a.node_port = Some(30080);
        let b = Service::new(VIP, 443, PROTO_TCP, vec![ep(2, 443)], vec![], 251);
        t.insert(Arc::new(a));
        t.insert(Arc::new(b));
        assert!(t.is_vip(VIP) && t.is_backend(0x0af4_0102));
        assert!(t.node_port(30080, PROTO_TCP).is_some());
        assert!(t.node_port(30080, PROTO_UDP).is_none());
        t.remove(service_key(VIP, 80, PROTO_TCP));
        assert!(t.is_vip(VIP) && t.is_backend(0x0af4_0102));
        assert!(t.node_port(30080, PROTO_TCP).is_none());
        t.remove(service_key(VIP, 443, PROTO_TCP));
        assert!(!t.is_vip(VIP) && !t.is_backend(0x0af4_0102) && t.is_empty());
    }
}
