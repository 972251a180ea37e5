//! Pipeline stages, one file each, each a loop over the batch.
//!
//! A stage only looks at frames that are still alive and either leaves the
//! verdict alone or refines it; dropping is a verdict, never an error.

pub mod arp;
pub mod forward;
pub mod learn;
pub mod nd;
pub mod output;
pub mod parse;
pub mod route;
pub mod route6;
pub mod security;
pub mod service;
