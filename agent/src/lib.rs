//! vswitch-agent's model of the cluster: what vswitchd must hold, as a pure
//! function of the Services, EndpointSlices and Nodes seen in the
//! Kubernetes API ([`desired`]), with kube-proxy's semantics for Services
//! and host-gw or VXLAN routes for other nodes' pod CIDRs.
//!
//! Code map: `services` turns Services and their EndpointSlices into
//! vswitchd Services; `nodes` turns Nodes into the switch's gateway
//! addresses and routes; `diff` turns the difference between what
//! vswitchd holds and the desired state into control requests.
//!
//! (The watch of the API and the agent's process are not written yet: this
//! crate is the pure part of the agent, which `tests/sync.rs` drives
//! against a real vswitchd.)

pub mod diff;
mod nodes;
mod services;

use std::collections::{BTreeMap, BTreeSet};

use ctl::{RouteSpec, ServiceKey, ServiceSpec};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The owner the agent marks its Services, routes and addresses with in
/// vswitchd, so that it changes only what it made and leaves what was
/// made by hand alone.
pub const OWNER: &str = "vswitch-agent";

/// What the agent has seen of the API.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    pub nodes: Vec<Node>,
}

/// How this node joins the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// This node's name (`--node-name`, `NODE_NAME`).
    pub node: String,
    /// Other nodes' pods over VXLAN with this network identifier, or
    /// routed directly to the node (host-gw) when `None`.
    pub vxlan_vni: Option<u32>,
}

/// A Service's health check for externalTrafficPolicy Local, answered as
/// kube-proxy does (200 with the count of local endpoints, 503 when none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `namespace/name` of the Service.
    pub service: String,
    pub local_endpoints: usize,
}

/// What vswitchd must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
    /// The switch's router (gateway) addresses: this node's pod CIDRs.
    pub addrs: BTreeSet<IpNet>,
    /// Routes to other nodes' pod CIDRs.
    pub routes: BTreeMap<IpNet, RouteSpec>,
    /// healthCheckNodePort → its Service.
    pub health: BTreeMap<u16, HealthCheck>,
    /// What vswitch cannot express, per object (`namespace/name` or a
    /// node's name): logged once and counted by the agent, never dropped
    /// silently.
    pub unsupported: BTreeMap<String, Vec<String>>,
}

impl Desired {
    fn note(&mut self, object: &str, why: String) {
        let notes = self.unsupported.entry(object.to_string()).or_default();
        if !notes.contains(&why) {
            notes.push(why);
        }
    }
}

/// What vswitchd must hold for `cluster`, on the node `opts` names.
pub fn desired(cluster: &Cluster, opts: &Options) -> Desired {
    let mut d = Desired::default();
    services::add(&mut d, cluster, opts);
    nodes::add(&mut d, cluster, opts);
    d
}
