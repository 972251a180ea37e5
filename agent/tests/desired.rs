//! The desired state of a node's switch, computed from JSON fixtures in the
//! shape the Kubernetes API serves them (`tests/fixtures/`: Services,
//! EndpointSlices and Nodes as `kubectl get -o json` prints them).

use std::net::SocketAddr;

use agent::{Cluster, Desired, HealthCheck, Options, desired};
use ctl::{Encap, ServiceKey, ServiceSpec};
use k8s_openapi::List;
use serde::de::DeserializeOwned;

fn items<T: DeserializeOwned + k8s_openapi::ListableResource>(file: &str) -> Vec<T> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let list: List<T> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    list.items
}

fn cluster() -> Cluster {
    Cluster {
        services: items("services.json"),
        slices: items("slices.json"),
        nodes: items("nodes.json"),
    }
}

fn on(node: &str, vni: Option<u32>) -> Desired {
    desired(
        &cluster(),
        &Options {
            node: node.to_string(),
            vxlan_vni: vni,
        },
    )
}

fn key(s: &str) -> ServiceKey {
    s.parse().unwrap()
}

fn eps(list: &[&str]) -> Vec<SocketAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn spec(d: &Desired, k: &str) -> ServiceSpec {
    d.services
        .get(&key(k))
        .unwrap_or_else(|| panic!("no Service {k}: {:#?}", d.services.keys()))
        .clone()
}

#[test]
fn cluster_ips_get_the_ready_endpoints_of_their_port_and_family() {
    let d = on("node-a", None);
    // Merged from two slices, the duplicate once; not-ready-not-serving
    // left out; the serving-terminating one kept as the fallback; an
    // endpoint without conditions is ready; a slice of another namespace
    // with the same Service name is not this Service's.
    let web = spec(&d, "10.96.0.10:80/tcp");
    assert_eq!(
        web.backends,
        eps(&["10.244.1.5:8080", "10.244.2.7:8080", "10.244.3.3:8080"])
    );
    assert_eq!(web.terminating, eps(&["10.244.1.9:8080"]));
    assert_eq!(web.affinity_timeout, None);
    assert_eq!(web.node_port, None);
    // The port by name: dns → 5353 over UDP, from the one slice naming it.
    let dns = spec(&d, "10.96.0.10:53/udp");
    assert_eq!(dns.backends, eps(&["10.244.1.5:5353", "10.244.2.7:5353"]));
    // The IPv6 clusterIP is noted: vswitch's VIPs are IPv4.
    assert!(!d.services.keys().any(|k| k.vip.is_ipv6()));
    let notes = &d.unsupported["default/web"];
    assert!(notes.iter().any(|n| n.contains("fd00:96::10")), "{notes:?}");
}

#[test]
fn headless_external_name_and_other_proxies_services_are_left_out() {
    let d = on("node-a", None);
    let vips: Vec<String> = d.services.keys().map(|k| k.vip.to_string()).collect();
    // other's label names another proxy.
    assert!(!vips.contains(&"10.96.0.40".to_string()), "{vips:?}");
    // web (2 ports, IPv4), shop (clusterIP, externalIP, one
    // LoadBalancer IP), drain (2 ports); legacy's SCTP and QUIC ports are
    // not served.
    assert_eq!(d.services.len(), 2 + 3 + 2, "{:#?}", d.services.keys());
    assert!(!d.unsupported.contains_key("default/db"));
    assert!(!d.unsupported.contains_key("default/ext"));
}

#[test]
fn traffic_policies_affinity_node_ports_and_load_balancers() {
    let d = on("node-a", None);
    // internalTrafficPolicy Local: the clusterIP gets node-a's endpoint only.
    let shop = spec(&d, "10.96.0.50:443/tcp");
    assert_eq!(shop.backends, eps(&["10.244.1.20:8443"]));
    assert_eq!(shop.affinity_timeout, Some(300));
    assert_eq!(shop.node_port, Some(30443));
    // externalTrafficPolicy Local: externalIPs and the VIP-mode ingress
    // IP, node-a's endpoint only; the Proxy-mode ingress left out (noted).
    for ext in ["192.0.2.50:443/tcp", "203.0.113.7:443/tcp"] {
        let s = spec(&d, ext);
        assert_eq!(s.backends, eps(&["10.244.1.20:8443"]), "{ext}");
        assert_eq!(
            s.node_port, None,
            "{ext}: the NodePort rides on the clusterIP"
        );
    }
    assert!(!d.services.contains_key(&key("203.0.113.8:443/tcp")));
    let notes = &d.unsupported["prod/shop"];
    assert!(
        notes.iter().any(|n| n.contains("ipMode Proxy")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("loadBalancerSourceRanges")),
        "{notes:?}"
    );
    // The health check counts node-a's ready endpoints.
    assert_eq!(
        d.health.get(&32000),
        Some(&HealthCheck {
            service: "prod/shop".into(),
            local_endpoints: 1
        })
    );
    // On node-b the same Service has node-b's endpoint.
    let b = on("node-b", None);
    assert_eq!(
        spec(&b, "10.96.0.50:443/tcp").backends,
        eps(&["10.244.2.20:8443"])
    );
    // drain: every endpoint terminating; the serving one is the fallback.
    // Its traffic policies differ, which vswitch cannot express: noted.
    let drain = spec(&d, "10.96.0.60:80/tcp");
    assert!(drain.backends.is_empty());
    assert_eq!(drain.terminating, eps(&["10.244.1.30:8080"]));
    assert_eq!(drain.node_port, Some(30080));
    assert!(
        d.unsupported["prod/drain"]
            .iter()
            .any(|n| n.contains("externalTrafficPolicy")),
        "{:?}",
        d.unsupported["prod/drain"]
    );
    // A NodePort out of range is no NodePort at all.
    assert_eq!(spec(&d, "10.96.0.60:81/tcp").node_port, None);
    // SCTP (which vswitch does not balance) and an unknown protocol are
    // noted, not dropped silently.
    let legacy = &d.unsupported["prod/legacy"];
    assert!(legacy.iter().any(|n| n.contains("SCTP")), "{legacy:?}");
    assert!(legacy.iter().any(|n| n.contains("QUIC")), "{legacy:?}");
}

#[test]
fn nodes_give_gateways_and_routes() {
    let d = on("node-a", None);
    let addrs: Vec<String> = d.addrs.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["10.244.1.1/24", "fd00:244:1::1/64"]);
    // host-gw: each family through the node's InternalIP of that family.
    let r4 = &d.routes[&"10.244.2.0/24".parse().unwrap()];
    assert_eq!(r4.via, Some("192.168.1.12".parse().unwrap()));
    assert_eq!(r4.encap, None);
    let r6 = &d.routes[&"fd00:244:2::/64".parse().unwrap()];
    assert_eq!(r6.via, Some("fd00:1::12".parse().unwrap()));
    // node-c has no InternalIP: noted, not routed; node-d has no CIDR.
    assert_eq!(d.routes.len(), 2, "{:#?}", d.routes);
    assert!(d.unsupported["node-c"][0].contains("InternalIP"));
    // VXLAN: every CIDR over the node's IPv4 address.
    let v = on("node-a", Some(42));
    let r6 = &v.routes[&"fd00:244:2::/64".parse().unwrap()];
    assert_eq!(r6.via, Some("192.168.1.12".parse().unwrap()));
    assert_eq!(r6.encap, Some(Encap::Vxlan { vni: 42 }));
    // Seen from node-b, node-a's CIDRs are the routes.
    let b = on("node-b", None);
    assert!(b.routes.contains_key(&"10.244.1.0/24".parse().unwrap()));
    assert!(b.addrs.contains(&"10.244.2.1/24".parse().unwrap()));
}

#[test]
fn the_result_is_a_function_of_what_was_seen() {
    // The same objects in another order give the same state.
    let mut c = cluster();
    c.services.reverse();
    c.slices.reverse();
    c.nodes.reverse();
    let opts = Options {
        node: "node-a".into(),
        vxlan_vni: None,
    };
    assert_eq!(desired(&c, &opts), on("node-a", None));
}
