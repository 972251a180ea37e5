//! The vswitch daemon's parts, as a library: `vswitchd` (`main.rs`) is its
//! one user, and the fuzz targets (`fuzz/`) reach the configuration model
//! and the state file through it.
//!
//! - [`controller`]: the one place that changes the configuration.
//! - [`model`]: the configuration as a value, with pure checks.
//! - [`state`]: the state file.
//! - [`server`]: the control socket and the metrics endpoint.
//! - [`workers`]: starting and stopping the workers.
//! - [`os`]: OS calls only the daemon makes.

pub mod controller;
pub mod model;
pub mod os;
pub mod server;
pub mod state;
pub mod workers;
