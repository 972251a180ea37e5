//! The arguments of `trace` and `capture`. `trace inject` is one request;
//! `trace live` and `capture` are run by the binary, which follows a watch.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::Failure;
use crate::{Command, MacAddr, TraceFrame, from_hex, parse_packet};

#[derive(Debug, Subcommand)]
pub enum TraceCmd {
    /// Run a packet through the switch as if it had arrived on PORT, send
    /// nothing, and print what each stage decided.
    ///
    /// FRAME is `tcp SRC:PORT to DST:PORT [syn|ack|fin|rst|psh ...]` (a SYN
    /// without flags), `udp SRC:PORT to DST:PORT`, `icmp SRC to DST` (an
    /// echo request), `arp SRC to DST` (who-has DST), or `hex BYTES` (a
    /// whole Ethernet frame); '->' may stand for 'to', quoted. IPv6 ends are written [ADDR]:PORT. The MACs
    /// default to one the switch learned on PORT and to the neighbour's (or
    /// the router's) MAC. The run uses the configuration the workers use
    /// and a copy of the connection's conntrack entry; it changes nothing.
    Inject(InjectArgs),
    /// Print what the switch does with the next packets arriving on PORT,
    /// stage by stage.
    Live(LiveArgs),
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The port the packet arrives on.
    pub port: String,
    /// Source MAC of the frame.
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<MacAddr>,
    /// Destination MAC of the frame.
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<MacAddr>,
    /// TTL (hop limit) of the packet; 64 by default.
    #[arg(long)]
    pub ttl: Option<u8>,
    /// The packet (see above).
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true, trailing_var_arg = true, value_name = "FRAME")]
    pub frame: Vec<String>,
}

impl InjectArgs {
    pub fn to_command(&self) -> Result<Command, Failure> {
        // FRAME takes every word after PORT; an option among them was
        // meant for vswitchctl. One quoted FRAME is split into its words.
        if let Some(o) = self
            .frame
            .iter()
            .find(|w| w.starts_with('-') && *w != "->" && *w != "-")
        {
            return Err(Failure::Usage(format!(
                "'{o}' after FRAME: options go before PORT (vswitchctl [-o json] trace inject [OPTIONS] PORT FRAME)"
            )));
        }
        let words: Vec<String> = self
            .frame
            .iter()
            .flat_map(|w| w.split_whitespace())
            .map(String::from)
            .collect();
        let frame = if words.first().is_some_and(|w| w == "hex") {
            if words.len() == 1 {
                return Err(Failure::Usage(
                    "hex: give the frame's bytes, such as 'hex ffffffffffff0200...'".into(),
                ));
            }
            if self.src_mac.is_some() || self.dst_mac.is_some() || self.ttl.is_some() {
                return Err(Failure::Usage(
                    "--src-mac, --dst-mac and --ttl describe a packet; a hex frame is sent as it is".into(),
                ));
            }
            let bytes = words[1..].join("");
            from_hex(&bytes).map_err(Failure::Usage)?;
            TraceFrame::Hex { bytes }
        } else {
            let mut p = parse_packet(&words).map_err(Failure::Usage)?;
            p.src_mac = self.src_mac;
            p.dst_mac = self.dst_mac;
            p.ttl = self.ttl;
            TraceFrame::Packet(p)
        };
        Ok(Command::TraceInject {
            port: self.port.clone(),
            frame,
        })
    }
}

/// Filter expressions, for the help of both commands.
const FILTER_HELP: &str = "Keep only frames matching EXPR: terms joined by 'and', each maybe \
preceded by 'not': arp, ip, ip6, icmp, icmp6, tcp, udp, vxlan, [src|dst] host ADDR, src ADDR, \
dst ADDR, [src|dst] port N, ether [src|dst|host] MAC";

#[derive(Debug, Args)]
pub struct LiveArgs {
    /// The port whose arriving packets are traced.
    pub port: String,
    #[arg(long, value_name = "EXPR", help = FILTER_HELP)]
    pub filter: Option<String>,
    /// Stop after this many packets (10 unless --duration is given).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dir {
    In,
    Out,
    Both,
}

/// Write what crosses PORT to a pcapng file (tcpdump -r, Wireshark).
///
/// `in` frames are those received from the port, `out` those the switch
/// queued to send on it. Ends after --count frames or --duration seconds
/// (at most a day), or at Ctrl-C. A reader too slow for the traffic loses
/// frames (counted and reported at the end), never slowing the switch.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The port to capture on.
    pub port: String,
    /// Which frames: received (in), sent (out) or both.
    #[arg(long, short = 'd', value_enum, default_value_t = Dir::Both)]
    pub direction: Dir,
    /// Stop after this many frames.
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: Option<u64>,
    /// Keep at most this many bytes of each frame (0: all of it).
    #[arg(long, short = 's', default_value_t = crate::SNAPLEN_DEFAULT, value_parser = snaplen)]
    pub snaplen: u32,
    #[arg(long, value_name = "EXPR", help = FILTER_HELP)]
    pub filter: Option<String>,
    /// The pcapng file to write; '-' writes to standard output.
    #[arg(short = 'w', value_name = "FILE", required = true)]
    pub write: PathBuf,
}

/// 0 or 14 to [`crate::SNAPLEN_DEFAULT`].
fn snaplen(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if n == 0 || (14..=crate::SNAPLEN_DEFAULT).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "0 (the whole frame) or 14 to {}",
            crate::SNAPLEN_DEFAULT
        ))
    }
}
