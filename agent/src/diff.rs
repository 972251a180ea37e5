//! The difference between what vswitchd holds for the agent and what it
//! must hold, as the control requests that make one the other: only what
//! changed is sent, Service changes in one batch (applied all or nothing).

use std::collections::{BTreeMap, BTreeSet};

use std::net::SocketAddr;

use ctl::{
    AddrInfo, BackendState, Command, RouteInfo, RouteOrigin, RouteSpec, ServiceInfo, ServiceKey,
    ServiceSpec,
};
use ipnet::IpNet;

use crate::Desired;

/// What vswitchd holds of the agent's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub services: BTreeMap<ServiceKey, ServiceSpec>,
    pub addrs: BTreeSet<IpNet>,
    pub routes: BTreeMap<IpNet, RouteSpec>,
}

impl Current {
    /// The agent's part (marked [`crate::OWNER`]) of what vswitchd lists
    /// (`service list`, `addr list`, `route list`).
    pub fn from_lists(services: &[ServiceInfo], addrs: &[AddrInfo], routes: &[RouteInfo]) -> Self {
        let ours = |o: &Option<String>| o.as_deref() == Some(crate::OWNER);
        let with = |state| {
            move |s: &ServiceInfo| -> Vec<SocketAddr> {
                s.backends
                    .iter()
                    .filter(|b| b.state == state)
                    .map(|b| b.addr)
                    .collect()
            }
        };
        Current {
            services: services
                .iter()
                .filter(|s| ours(&s.owner))
                .map(|s| {
                    let spec = ServiceSpec {
                        service: s.service,
                        backends: with(BackendState::Ready)(s),
                        terminating: with(BackendState::Terminating)(s),
                        affinity_timeout: s.affinity_timeout,
                        node_port: s.node_port,
                        owner: s.owner.clone(),
                        may_exist: false,
                    };
                    (s.service, spec)
                })
                .collect(),
            addrs: addrs
                .iter()
                .filter(|a| ours(&a.owner))
                .map(|a| a.addr)
                .collect(),
            routes: routes
                .iter()
                .filter(|r| r.origin == RouteOrigin::Static && ours(&r.owner))
                .map(|r| {
                    let spec = RouteSpec {
                        prefix: r.prefix,
                        via: r.via,
                        dev: r.dev.clone(),
                        encap: r.encap,
                        owner: r.owner.clone(),
                        may_exist: false,
                    };
                    (r.prefix, spec)
                })
                .collect(),
        }
    }
}

/// The requests, in the order they must go: routes that go or change
/// first (a route may depend on an address that goes), then the Services
/// in one batch, new addresses (a new route's next hop needs its subnet),
/// new routes, and the addresses that go last.
pub fn requests(current: &Current, desired: &Desired) -> Vec<Command> {
    let mut out = Vec::new();
    for (prefix, have) in &current.routes {
        if desired.routes.get(prefix) != Some(have) {
            out.push(Command::RouteDel {
                prefix: *prefix,
                if_exists: true,
            });
        }
    }
    let batch = service_changes(&current.services, &desired.services);
    if !batch.is_empty() {
        out.push(Command::Batch { commands: batch });
    }
    for addr in desired.addrs.difference(&current.addrs) {
        out.push(Command::AddrAdd {
            owner: Some(crate::OWNER.to_string()),
            addr: *addr,
            may_exist: true,
        });
    }
    for (prefix, want) in &desired.routes {
        if current.routes.get(prefix) != Some(want) {
            out.push(Command::RouteAdd(RouteSpec {
                may_exist: true,
                ..want.clone()
            }));
        }
    }
    for addr in current.addrs.difference(&desired.addrs) {
        out.push(Command::AddrDel {
            addr: *addr,
            if_exists: true,
        });
    }
    out
}

/// The Service commands of one batch: endpoints alone changed is `service
/// backends` (connections to endpoints that stay keep them), anything else
/// changed is the Service deleted and added again.
fn service_changes(
    have: &BTreeMap<ServiceKey, ServiceSpec>,
    want: &BTreeMap<ServiceKey, ServiceSpec>,
) -> Vec<Command> {
    let mut out = Vec::new();
    for (key, h) in have {
        match want.get(key) {
            None => out.push(Command::ServiceDel {
                service: *key,
                if_exists: true,
            }),
            Some(w) if w == h => {}
            Some(w) if w.affinity_timeout == h.affinity_timeout && w.node_port == h.node_port => {
                out.push(Command::ServiceBackends {
                    service: *key,
                    backends: w.backends.clone(),
                    terminating: w.terminating.clone(),
                });
            }
            Some(w) => {
                out.push(Command::ServiceDel {
                    service: *key,
                    if_exists: true,
                });
                out.push(Command::ServiceAdd(w.clone()));
            }
        }
    }
    for (key, w) in want {
        if !have.contains_key(key) {
            out.push(Command::ServiceAdd(w.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ctl::Encap;

    use super::*;

    fn svc(key: &str, backends: &[&str]) -> ServiceSpec {
        ServiceSpec::new(
            key.parse().unwrap(),
            backends
                .iter()
                .map(|b| b.parse::<SocketAddr>().unwrap())
                .collect(),
        )
    }

    fn route(prefix: &str, via: &str, vni: Option<u32>) -> RouteSpec {
        RouteSpec {
            owner: Some(crate::OWNER.to_string()),
            prefix: prefix.parse().unwrap(),
            via: Some(via.parse().unwrap()),
            dev: None,
            encap: vni.map(|vni| Encap::Vxlan { vni }),
            may_exist: false,
        }
    }

    fn desired_of(services: &[ServiceSpec], addrs: &[&str], routes: &[RouteSpec]) -> Desired {
        Desired {
            services: services.iter().map(|s| (s.service, s.clone())).collect(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            routes: routes.iter().map(|r| (r.prefix, r.clone())).collect(),
            ..Desired::default()
        }
    }

    fn current_of(d: &Desired) -> Current {
        Current {
            services: d.services.clone(),
            addrs: d.addrs.clone(),
            routes: d.routes.clone(),
        }
    }

    #[test]
    fn nothing_changed_sends_nothing() {
        let d = desired_of(
            &[svc("10.96.0.10:80/tcp", &["10.244.1.5:8080"])],
            &["10.244.1.1/24"],
            &[route("10.244.2.0/24", "192.168.1.12", None)],
        );
        assert!(requests(&current_of(&d), &d).is_empty());
    }

    #[test]
    fn a_first_sync_adds_everything_in_order() {
        let d = desired_of(
            &[svc("10.96.0.10:80/tcp", &["10.244.1.5:8080"])],
            &["10.244.1.1/24"],
            &[route("10.244.2.0/24", "192.168.1.12", None)],
        );
        let r = requests(&Current::default(), &d);
        assert!(matches!(&r[0], Command::Batch { commands } if commands.len() == 1));
        assert!(matches!(
            r[1],
            Command::AddrAdd {
                may_exist: true,
                ..
            }
        ));
        assert!(matches!(&r[2], Command::RouteAdd(s) if s.may_exist));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn endpoints_change_through_backends_and_options_through_del_and_add() {
        let before = desired_of(
            &[
                svc("10.96.0.10:80/tcp", &["10.244.1.5:8080"]),
                svc("10.96.0.11:80/tcp", &["10.244.1.6:8080"]),
                svc("10.96.0.12:80/tcp", &[]),
            ],
            &[],
            &[],
        );
        let mut affinity = svc("10.96.0.11:80/tcp", &["10.244.1.6:8080"]);
        affinity.affinity_timeout = Some(30);
        let after = desired_of(
            &[
                svc("10.96.0.10:80/tcp", &["10.244.1.5:8080", "10.244.2.7:8080"]),
                affinity.clone(),
                svc("10.96.0.13:80/tcp", &[]),
            ],
            &[],
            &[],
        );
        let r = requests(&current_of(&before), &after);
        let [Command::Batch { commands }] = &r[..] else {
            panic!("{r:#?}");
        };
        assert_eq!(
            commands,
            &vec![
                Command::ServiceBackends {
                    service: "10.96.0.10:80/tcp".parse().unwrap(),
                    backends: vec![
                        "10.244.1.5:8080".parse().unwrap(),
                        "10.244.2.7:8080".parse().unwrap()
                    ],
                    terminating: vec![],
                },
                Command::ServiceDel {
                    service: "10.96.0.11:80/tcp".parse().unwrap(),
                    if_exists: true
                },
                Command::ServiceAdd(affinity),
                Command::ServiceDel {
                    service: "10.96.0.12:80/tcp".parse().unwrap(),
                    if_exists: true
                },
                Command::ServiceAdd(svc("10.96.0.13:80/tcp", &[])),
            ]
        );
    }

    #[test]
    fn nodes_that_go_and_change_remove_routes_before_addresses() {
        let before = desired_of(
            &[],
            &["10.244.1.1/24", "10.244.9.1/24"],
            &[
                route("10.244.2.0/24", "192.168.1.12", None),
                route("10.244.3.0/24", "192.168.1.13", None),
            ],
        );
        let after = desired_of(
            &[],
            &["10.244.1.1/24"],
            &[route("10.244.2.0/24", "192.168.1.12", Some(42))],
        );
        let r = requests(&current_of(&before), &after);
        let prefixes: Vec<String> = r
            .iter()
            .map(|c| match c {
                Command::RouteDel { prefix, .. } => format!("del {prefix}"),
                Command::RouteAdd(s) => format!("add {} {:?}", s.prefix, s.encap),
                Command::AddrDel { addr, .. } => format!("addr del {addr}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            prefixes,
            [
                "del 10.244.2.0/24",
                "del 10.244.3.0/24",
                "add 10.244.2.0/24 Some(Vxlan { vni: 42 })",
                "addr del 10.244.9.1/24",
            ]
        );
    }
}
