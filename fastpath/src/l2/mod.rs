//! Layer 2: the learned MAC table and the stages that switch frames
//! between pod ports.
//!
//! - [`fdb`]: the controller's MAC table and the workers' read-only view.
//! - [`security`]: port security (source MAC and addresses a port may use).
//! - [`learn`]: reports source MACs the published view does not know.
//! - [`forward`]: known unicast to one port, everything else flooded.

pub mod fdb;
pub mod forward;
pub mod learn;
pub mod security;
