//! The `addr`, `route` and `neigh` nouns.

use std::net::IpAddr;
use std::str::FromStr;

use clap::{Args, Subcommand, ValueEnum};
use ipnet::{IpNet, Ipv4Net};

use super::Failure;
use crate::{Encap, RouteSpec};

/// The largest VXLAN network identifier (24 bits); 0 is not used.
const VNI_MAX: i64 = 0xff_ffff;

#[derive(Debug, Subcommand)]
pub enum AddrCmd {
    /// Give the switch a router address. ADDR/PREFIX keeps its host bits:
    /// 10.244.1.1/24 is the address 10.244.1.1 on the subnet 10.244.1.0/24,
    /// which becomes a connected route.
    Add {
        #[arg(value_name = "ADDR/PREFIX", value_parser = router_addr)]
        addr: IpNet,
        /// Succeed when the address already exists.
        #[arg(long)]
        may_exist: bool,
    },
    /// Remove a router address and its connected route.
    Del {
        #[arg(value_name = "ADDR/PREFIX", value_parser = router_addr)]
        addr: IpNet,
        /// Succeed when the address does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List router addresses.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Add a static route: `route add 10.244.2.0/24 via 192.168.50.2`
    /// or `route add 10.244.9.0/24 dev uplink0`.
    Add(RouteAddArgs),
    /// Remove a static route.
    Del {
        /// Destination prefix, or `default` for 0.0.0.0/0.
        #[arg(value_name = "CIDR", value_parser = route_prefix)]
        prefix: IpNet,
        /// Succeed when the route does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// List every route the switch uses, static or not.
    List,
}

#[derive(Debug, Args)]
pub struct RouteAddArgs {
    /// Destination prefix with host bits zero, or `default` for 0.0.0.0/0.
    #[arg(value_name = "CIDR", value_parser = route_prefix)]
    prefix: IpNet,

    /// Where the traffic goes, as in `ip route`: `via NEXTHOP` (an address
    /// in a connected subnet) or `dev PORT` (directly on that port's link).
    #[arg(value_name = "via NEXTHOP | dev PORT", num_args = 0..)]
    target: Vec<String>,

    /// Encapsulate towards the next hop.
    #[arg(long, value_name = "TYPE", value_enum)]
    encap: Option<CliEncap>,

    /// VXLAN network identifier (1-16777215), with --encap vxlan.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=VNI_MAX)
    )]
    vni: Option<u32>,

    /// Succeed when the same route already exists.
    #[arg(long)]
    may_exist: bool,
}

#[derive(Debug, Subcommand)]
pub enum NeighCmd {
    /// List learned and configured neighbours.
    List,
}

/// [`Encap`] types as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CliEncap {
    Vxlan,
}

impl RouteAddArgs {
    pub(super) fn to_spec(&self) -> Result<RouteSpec, Failure> {
        let (via, dev) = route_target(&self.target).map_err(Failure::Usage)?;
        // A VXLAN endpoint is the remote node's (IPv4) address whatever
        // the family of the routed prefix.
        if let Some(via) = via
            && self.encap.is_none()
            && via.is_ipv4() != matches!(self.prefix, IpNet::V4(_))
        {
            let (hop, net) = if via.is_ipv4() {
                ("IPv4", "IPv6")
            } else {
                ("IPv6", "IPv4")
            };
            // `default` means 0.0.0.0/0, so an IPv6 default route needs ::/0.
            let hint = if via.is_ipv6() && self.prefix.prefix_len() == 0 {
                "; the IPv6 default route is ::/0"
            } else {
                ""
            };
            return Err(Failure::Usage(format!(
                "next hop {via} is {hop} but {} is {net}{hint}",
                self.prefix
            )));
        }
        let encap = match (self.encap, self.vni) {
            (None, None) => None,
            (Some(CliEncap::Vxlan), Some(vni)) => Some(Encap::Vxlan { vni }),
            (Some(CliEncap::Vxlan), None) => {
                return Err(Failure::Usage(format!(
                    "--encap vxlan needs --vni N (1-{VNI_MAX})"
                )));
            }
            (None, Some(_)) => {
                return Err(Failure::Usage(
                    "--vni applies only with --encap vxlan".to_string(),
                ));
            }
        };
        if encap.is_some() && via.is_none() {
            return Err(Failure::Usage(
                "--encap needs 'via NEXTHOP': the tunnel ends at the next hop".to_string(),
            ));
        }
        Ok(RouteSpec {
            owner: None,
            prefix: self.prefix,
            via,
            dev,
            encap,
            may_exist: self.may_exist,
        })
    }
}

/// The destination of `route add` from its `ip route`-style keyword pairs:
/// exactly one of `via NEXTHOP` and `dev PORT`.
fn route_target(words: &[String]) -> Result<(Option<IpAddr>, Option<String>), String> {
    const EXPECTED: &str = "expected 'via NEXTHOP' or 'dev PORT' after the prefix";
    let mut via = None;
    let mut dev = None;
    let mut words = words.iter().map(String::as_str);
    while let Some(keyword) = words.next() {
        // A keyword where a value belongs means the value is missing.
        let value = words.next().filter(|v| !matches!(*v, "via" | "dev" | ""));
        match keyword {
            "via" => {
                let value =
                    value.ok_or("'via' needs a next-hop address, such as 'via 192.168.50.2'")?;
                if via.is_some() {
                    return Err("'via' is given twice".to_string());
                }
                let hop = value.parse::<IpAddr>().map_err(|_| {
                    format!("invalid next hop '{value}': expected an IPv4 or IPv6 address")
                })?;
                via = Some(hop);
            }
            "dev" => {
                let value = value.ok_or("'dev' needs a port name, such as 'dev uplink0'")?;
                if dev.is_some() {
                    return Err("'dev' is given twice".to_string());
                }
                dev = Some(value.to_string());
            }
            other => return Err(format!("unknown keyword '{other}'; {EXPECTED}")),
        }
    }
    match (via, dev) {
        (None, None) => Err(format!("missing destination; {EXPECTED}")),
        (Some(_), Some(_)) => Err("give either 'via NEXTHOP' or 'dev PORT', not both".to_string()),
        target => Ok(target),
    }
}

/// Parses a router address `ADDR/PREFIX`, keeping its host bits.
fn router_addr(s: &str) -> Result<IpNet, String> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        let example = if addr.is_ipv4() { 24 } else { 64 };
        return Err(format!(
            "missing prefix length; give the address with its subnet, such as {addr}/{example}"
        ));
    }
    IpNet::from_str(s).map_err(|_| {
        "expected an address with its prefix length, such as 10.244.1.1/24".to_string()
    })
}

/// Parses a route destination: a prefix whose host bits are zero, or
/// `default` for 0.0.0.0/0.
fn route_prefix(s: &str) -> Result<IpNet, String> {
    if s == "default" {
        return Ok(IpNet::V4(Ipv4Net::default()));
    }
    if let Ok(addr) = s.parse::<IpAddr>() {
        let host = if addr.is_ipv4() { 32 } else { 128 };
        return Err(format!(
            "missing prefix length; for a route to this one address give {addr}/{host}"
        ));
    }
    let prefix = IpNet::from_str(s)
        .map_err(|_| "expected a prefix such as 10.244.2.0/24, or 'default'".to_string())?;
    if prefix.trunc() != prefix {
        return Err(format!(
            "{prefix} has host bits set; did you mean {}?",
            prefix.trunc()
        ));
    }
    Ok(prefix)
}
