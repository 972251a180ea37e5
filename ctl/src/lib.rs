//! The vswitch control protocol and its client, and vswitchctl's command
//! line ([`cli`]: the clap definition and the `batch` parser, here so the
//! fuzz targets reach them).
//!
//! `vswitchd` listens on a unix stream socket (default [`DEFAULT_SOCKET`]).
//! A client writes one JSON [`Request`] per line and reads one JSON
//! [`Response`] per line. Every message carries [`PROTOCOL_VERSION`]; the
//! daemon refuses a request whose version it does not speak. These types are
//! the one definition of the protocol: the daemon and `vswitchctl` both use
//! them, so the two cannot drift apart.

pub mod cli;
pub mod client;
pub mod mac;
pub mod proto;
pub mod reply;
pub mod service;
pub mod trace;

pub use client::{Client, ClientError};
pub use mac::MacAddr;
pub use proto::*;
pub use service::*;
pub use trace::*;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
/// Default path of the state file.
pub const DEFAULT_STATE: &str = "/var/lib/vswitch/state.json";
/// Most queues one port may have (`port add … --queues`).
pub const MAX_QUEUES: u16 = 32;
