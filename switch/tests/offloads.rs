//! Pods that keep the kernel's default offloads. A pod on a veth pair (an
//! AF_XDP port) with TX checksum offload on sends TCP and UDP with partial
//! checksums (only the pseudo-header summed); the switch completes them, so
//! the receiving pod, on AF_XDP or TAP, accepts every segment and counts no
//! checksum error. (`scripts/pod.sh` turns the offload off; these tests
//! turn it back on.)
//!
//! Needs root; see `common/mod.rs`.

mod common;

use common::{Attach, Pod, TestEnv, netns_exec};

/// Turns TX checksum offload (back) on in a pod, as a container runtime
/// leaves it.
fn offloads_on(pod: &Pod) {
    let r = netns_exec(&pod.name, &["ethtool", "-K", "eth0", "tx", "on"]);
    assert!(
        r.success(),
        "ethtool -K eth0 tx on in {}: {}",
        pod.name,
        r.stderr
    );
    let k = netns_exec(&pod.name, &["ethtool", "-k", "eth0"]).stdout;
    assert!(k.contains("tx-checksumming: on"), "{}: {k}", pod.name);
}

/// The pod's TCP and UDP checksum error counters.
fn csum_errors(pod: &Pod) -> (u64, u64) {
    let r = netns_exec(
        &pod.name,
        &["nstat", "-az", "TcpInCsumErrors", "UdpInCsumErrors"],
    );
    assert!(r.success(), "nstat in {}: {}", pod.name, r.stderr);
    let read = |name: &str| {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in nstat output: {}", r.stdout))
    };
    (read("TcpInCsumErrors"), read("UdpInCsumErrors"))
}

/// Sends 100 UDP datagrams of 1,000 bytes from `from` to `to` and returns
/// how many arrived.
fn udp_datagrams(from: &Pod, to: &Pod) -> usize {
    let server = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{}', 9999))\n\
         s.settimeout(3)\n\
         n = 0\n\
         try:\n\
         \x20   while True:\n\
         \x20       s.recv(2048)\n\
         \x20       n += 1\n\
         except socket.timeout:\n\
         \x20   pass\n\
         print(n)\n",
        to.ip
    );
    let rx = std::process::Command::new("ip")
        .args(["netns", "exec", &to.name, "python3", "-c", &server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let client = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(100):\n\
         \x20   s.sendto(bytes([i]) * 1000, ('{}', 9999))\n\
         \x20   time.sleep(0.002)\n",
        to.ip
    );
    let r = netns_exec(&from.name, &["python3", "-c", &client]);
    assert!(r.success(), "UDP sender in {}: {}", from.name, r.stderr);
    let out = rx.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn check(env: &mut TestEnv, a: &Pod, b: &Pod) {
    offloads_on(a);
    if b.attach == Attach::Afxdp {
        offloads_on(b);
    }
    let before = (csum_errors(a), csum_errors(b));
    env.ping(a, b);
    env.tcp_exchange(&a.name, &b.name, b.ip, 5001);
    if b.attach == Attach::Afxdp {
        env.tcp_exchange(&b.name, &a.name, a.ip, 5002);
    }
    let got = udp_datagrams(a, b);
    assert!(got >= 95, "{got} of 100 UDP datagrams arrived");
    assert_eq!(
        (csum_errors(a), csum_errors(b)),
        before,
        "checksum errors counted in the pods"
    );
}

#[test]
fn afxdp_pods_with_checksum_offload_reach_each_other() {
    let Some(mut env) = TestEnv::with_daemon("afxdp_pods_with_checksum_offload") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Afxdp);
    check(&mut env, &a, &b);
}

#[test]
fn an_afxdp_pod_with_checksum_offload_reaches_a_tap_pod() {
    let Some(mut env) = TestEnv::with_daemon("an_afxdp_pod_with_checksum_offload") else {
        return;
    };
    let a = env.add_pod("a", Attach::Afxdp);
    let b = env.add_pod("b", Attach::Tap);
    check(&mut env, &a, &b);
}
