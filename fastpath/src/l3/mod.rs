//! Layer 3: the router attached to the bridge of pod ports.
//!
//! - [`table`]: the route table (longest prefix match) and next hops.
//! - [`neigh`]: the controller's neighbour table and the workers' view.
//! - [`resolver`]: a worker's own L3 state: frames waiting for a
//!   neighbour, ARP/ND requests it sent, its ICMP error budget.
//! - [`arp`], [`nd`]: answer ARP and neighbour discovery for the switch's
//!   addresses and learn neighbours from what they hear.
//! - [`v4`], [`v6`]: the routing stage (IPv4 and IPv6), VXLAN
//!   encapsulation towards other nodes and decapsulation from them.

pub mod arp;
pub mod egress;
pub mod nd;
pub mod neigh;
pub mod next_hop;
pub mod resolver;
pub mod routing;
pub mod table;
pub mod v4;
pub mod v6;
pub mod vxlan;
