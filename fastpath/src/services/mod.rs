//! Kubernetes Services: VIPs and NodePorts in front of endpoints.
//!
//! - [`table`]: the Service table the controller publishes.
//! - [`maglev`]: each Service's consistent-hashing lookup table.
//! - [`conntrack`]: the shared connection table (one endpoint per flow)
//!   and each worker's cache of it.
//! - [`l4`]: address/port rewriting with incremental checksums, and the
//!   TCP reset a Service without endpoints answers with.
//! - [`stage`]: the Service stage, between ND and routing.

pub mod conntrack;
pub mod icmp;
pub mod l4;
pub mod maglev;
pub mod stage;
pub mod table;
