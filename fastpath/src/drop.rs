//! Why a frame was dropped.
//!
//! The snake_case names are stable: counters, the CLI and metrics use them.

/// Every way a frame can end without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt = 0,
    /// Headers that do not parse, or a frame longer than the port accepts.
    Malformed,
    /// Source MAC is multicast/broadcast or all zeros.
    InvalidSrcMac,
    /// Flooded, but there is no other port to flood to.
    NoDestination,
    /// The destination is the port the frame came in on.
    SamePort,
    /// The ingress port already has its maximum of learned MACs.
    MacLimit,
    /// The output port is down.
    PortDown,
    /// The output port's TX ring (or queue) is full.
    TxRingFull,
    /// No free buffer for a copy (flooding, handoff to another worker).
    NoBuffer,
    /// Destination in 01:80:c2:00:00:00/44 (STP, LACP, LLDP, pause…):
    /// link-local control frames that a bridge must not forward.
    LinkLocal,
    /// From a pod port, with a source MAC or IP (or ARP sender) that is not
    /// the pod's.
    SpoofedSource,
    /// Routed with a TTL of 0 or 1 (ICMP time exceeded sent).
    TtlExpired,
    /// No route to the destination (ICMP destination unreachable sent).
    NoRoute,
    /// Larger than the output MTU (ICMP fragmentation needed sent if DF).
    FragNeeded,
    /// The next hop did not answer ARP in time.
    NeighborUnresolved,
    /// Too many packets already waiting for neighbour resolution.
    NeighborQueueFull,
    /// IPv4 header with options (not routed).
    IpOptions,
    /// IPv4 fragment (not routed).
    IpFragment,
    /// Addressed to the router with a protocol it does not handle.
    Unsupported,
    /// To a Service without endpoints, or a VIP port no Service has (TCP
    /// reset or ICMP port unreachable sent).
    NoEndpoints,
    /// A new Service flow, refused because the connection table is full
    /// of established flows.
    ConntrackFull,
    /// From a TAP port with offloads, with a virtio-net header that does
    /// not describe its frame (GSO size 0, a header length or checksum
    /// position beyond the frame, an unknown GSO type), or a GSO frame
    /// whose headers do not parse.
    BadOffload,
}

impl DropReason {
    /// Number of reasons (size of counter arrays).
    pub const COUNT: usize = 22;

    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::Malformed,
        DropReason::InvalidSrcMac,
        DropReason::NoDestination,
        DropReason::SamePort,
        DropReason::MacLimit,
        DropReason::PortDown,
        DropReason::TxRingFull,
        DropReason::NoBuffer,
        DropReason::LinkLocal,
        DropReason::SpoofedSource,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::FragNeeded,
        DropReason::NeighborUnresolved,
        DropReason::NeighborQueueFull,
        DropReason::IpOptions,
        DropReason::IpFragment,
        DropReason::Unsupported,
        DropReason::NoEndpoints,
        DropReason::ConntrackFull,
        DropReason::BadOffload,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Malformed => "malformed",
            DropReason::InvalidSrcMac => "invalid_src_mac",
            DropReason::NoDestination => "no_destination",
            DropReason::SamePort => "same_port",
            DropReason::MacLimit => "mac_limit",
            DropReason::PortDown => "port_down",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::NoBuffer => "no_buffer",
            DropReason::LinkLocal => "link_local",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::FragNeeded => "frag_needed",
            DropReason::NeighborUnresolved => "neighbor_unresolved",
            DropReason::NeighborQueueFull => "neighbor_queue_full",
            DropReason::IpOptions => "ip_options",
            DropReason::IpFragment => "ip_fragment",
            DropReason::Unsupported => "unsupported",
            DropReason::NoEndpoints => "no_endpoints",
            DropReason::ConntrackFull => "conntrack_full",
            DropReason::BadOffload => "bad_offload",
        }
    }

    /// Index into counter arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_with_unique_names() {
        let mut names = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(names.insert(r.name()));
        }
    }
}
