//! vswitch's data plane.
//!
//! A worker thread owns a [`pool::FramePool`] (its AF_XDP UMEM) and a set of
//! [`port::Port`]s. It busy-polls them: receive a burst of up to
//! [`batch::BATCH_SIZE`] frames, run the burst through the pipeline stages,
//! transmit per output port, then give the kernel fresh buffers and reap
//! completed transmissions.
//!
//! The pipeline ([`pipeline`]; each stage is `run(batch, &mut Ctx)` with
//! the one [`ctx::Ctx`]):
//!
//! ```text
//! parse → security → csum → learn → arp → nd → vxlan → service → routing → forward → output
//! ```
//!
//! The code is laid out by feature: [`l2`] (MAC table, port security,
//! learning, forwarding), [`l3`] (route table, neighbours, the worker's
//! [`l3::resolver::Resolver`], ARP/ND, VXLAN, routing), [`services`]
//! (Service table, Maglev, conntrack, NAT, the Service stage), [`port`],
//! [`wire`], [`worker`]. The switch is a bridge of pod ports with a router
//! attached: frames between pods on one subnet are switched; frames to the
//! router's MAC, and everything from routed ports (the node's uplink, the
//! host port), are routed.
//!
//! Each stage loops over the whole batch and sets a per-frame
//! [`batch::Verdict`]. A frame ends sent on one or more ports or dropped with
//! a [`drop::DropReason`], counted on a port. A bad frame is never an error
//! that travels upward.
//!
//! Configuration reaches workers as an immutable [`snapshot::Snapshot`]
//! published through `ArcSwap`; a worker loads it once per batch, so a batch
//! sees one consistent version. Learned MAC addresses are owned by the
//! controller's [`l2::fdb::MacTable`]; workers report what they see over a
//! bounded channel and read the published [`l2::fdb::FdbView`].
//!
//! Invariants:
//! - The forwarding path never blocks or allocates per packet (except for a
//!   port being watched, see [`observe`]), and takes no
//!   lock per packet except conntrack shard locks for Service packets that
//!   miss the worker's flow cache (see [`services::conntrack`]).
//! - Every frame of a pool is, at any time, in exactly one place: the free
//!   list, a kernel ring, the worker's batch, or in transit to another worker.
//! - `unsafe` lives in [`pool`] (raw frame memory), [`port::afxdp`],
//!   [`port::uplink`] (libbpf) and [`sys`] (the OS), plus a poll(2) in [`worker`], the eventfd in
//!   [`worker::handoff`] and the clock read in [`clock`]; each block carries a
//!   `SAFETY:` note.

pub mod alloc_count;
pub mod batch;
pub mod clock;
pub mod counters;
pub mod ctx;
pub mod drop;
pub mod events;
pub mod gso;
pub mod l2;
pub mod l3;
pub mod observe;
pub mod pipeline;
pub mod pool;
pub mod port;
pub mod services;
pub mod snapshot;
pub mod sys;
#[cfg(test)]
pub(crate) mod test_frames;
pub mod tx;
pub mod wire;
pub mod worker;

/// Index of a port, stable for the port's lifetime; also indexes counters.
pub type PortId = u16;

/// Most ports one switch can hold.
pub const MAX_PORTS: usize = 1024;

/// Most queues one port may have (`port add … --queues`).
pub const MAX_QUEUES: u16 = 32;

/// The tag under which the pool records frames lent to queue `queue` of
/// port `id` (its kernel rings): one per queue, so that a frame lent to one
/// queue's socket is never taken back through another's.
#[inline]
pub const fn lender(id: PortId, queue: u16) -> u16 {
    id + queue * MAX_PORTS as u16
}

const _: () = assert!((MAX_PORTS as u32) * (MAX_QUEUES as u32) <= u16::MAX as u32 - 3);

/// A MAC address packed into the low 48 bits of a u64 (first octet most
/// significant), the key of the forwarding tables.
pub type MacKey = u64;

/// Packs six octets into a [`MacKey`].
#[inline]
pub fn mac_key(m: &[u8; 6]) -> MacKey {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Unpacks a [`MacKey`].
#[inline]
pub fn mac_octets(k: MacKey) -> [u8; 6] {
    let b = k.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}
