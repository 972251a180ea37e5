//! The pipeline: every stage in order, each one call over the whole batch
//! with the one [`Ctx`].
//!
//! ```text
//! parse → security → csum → learn → arp → nd → vxlan → service → routing → forward → output
//! ```
//!
//! - [`parse`]: Ethernet header, source MAC sanity, where L4 starts.
//! - [`crate::l2::security`]: port security.
//! - [`csum`]: completes partial TCP/UDP checksums from veth pods.
//! - [`crate::l2::learn`]: MAC learning reports.
//! - [`crate::l3::arp`], [`crate::l3::nd`]: the switch's own neighbour
//!   protocols.
//! - [`crate::l3::vxlan`]: unwraps VXLAN from other nodes.
//! - [`crate::services::stage`]: Service VIPs and NodePorts, conntrack, NAT.
//! - [`crate::l3::routing`]: IPv4/IPv6 routing, and sending back answers.
//! - [`crate::l2::forward`]: switching between pod ports.
//! - [`output`]: carries out the verdicts.
//!
//! A stage only looks at frames that are still alive and either leaves the
//! verdict alone or refines it; dropping is a verdict, never an error.

pub mod csum;
pub mod output;
pub mod parse;

use crate::batch::Batch;
use crate::ctx::Ctx;
use crate::l2::{forward, learn, security};
use crate::l3::{arp, nd, routing, vxlan};
use crate::services;

/// One stage: what every stage's `run` is.
pub type Stage = fn(&mut Batch, &mut Ctx<'_>);

/// Declares the pipeline once: [`process`] calls the stages in order (direct
/// calls the compiler inlines), [`STAGES`] names the same list for the
/// stage-by-stage runs of `vswitchctl trace`.
macro_rules! pipeline {
    ($($name:literal => $stage:path,)*) => {
        /// Every stage, named, in pipeline order.
        pub const STAGES: &[(&str, Stage)] = &[$(($name, $stage as Stage)),*];

        /// Runs one batch through the pipeline. Afterwards every frame of the batch
        /// is queued in `cx.outputs`, held by the resolver (waiting for a
        /// neighbour), or freed (counted as a drop unless the switch itself
        /// consumed it).
        #[inline(never)]
        pub fn process(batch: &mut Batch, cx: &mut Ctx<'_>) {
            $($stage(batch, cx);)*
            batch.clear();
        }
    };
}

pipeline! {
    "parse" => parse::run,
    "security" => security::run,
    "csum" => csum::run,
    "learn" => learn::run,
    "arp" => arp::run,
    "nd" => nd::run,
    "vxlan" => vxlan::run,
    "service" => services::stage::run,
    "routing" => routing::run,
    "forward" => forward::run,
    "output" => output::run,
}

/// Runs frames that waited for a neighbour through the stages after the
/// one that held them: routing (which holds frames), forwarding and
/// output. The stages before it already ran on them (a frame translated
/// by the Service stage must not be checked by port security again, nor
/// one unwrapped from VXLAN be unwrapped twice).
#[inline]
pub fn process_held(batch: &mut Batch, cx: &mut Ctx<'_>) {
    routing::run(batch, cx);
    forward::run(batch, cx);
    output::run(batch, cx);
    batch.clear();
}
