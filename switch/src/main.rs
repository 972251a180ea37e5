//! vswitchd: a per-node userspace virtual switch for Kubernetes pods.
//!
//! The main thread parses arguments, starts the workers, restores the state
//! file, then becomes the controller: it serves the control socket and owns
//! the configuration. See ARCHITECTURE.md for the big picture.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, ValueEnum};
use fastpath::l2::fdb::{DEFAULT_AGING_SECS, DEFAULT_MAC_LIMIT};
use fastpath::port::tap::TapIo;
use fastpath::services::conntrack::Conntrack;
use fastpath::snapshot::{self, Snapshot};
use fastpath::worker::PollMode;

use switch::controller::{Controller, Settings};
use switch::workers::{self, Workers};
use switch::{server, state};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Poll {
    /// Spin on the queues (lowest latency; each worker keeps its core busy).
    Busy,
    /// Sleep in poll(2) after a run of empty polls.
    Adaptive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TapIoArg {
    /// One io_uring submission per burst (falls back to syscalls where the
    /// kernel refuses it).
    #[value(alias = "io_uring")]
    IoUring,
    /// One read(2)/write(2) per frame.
    Syscalls,
}

/// The vswitch daemon.
#[derive(Debug, Parser)]
#[command(name = "vswitchd", version, about)]
struct Args {
    /// Control socket path.
    #[arg(long, default_value = ctl::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// State file path (configuration restored on start).
    #[arg(long, default_value = ctl::DEFAULT_STATE)]
    state: PathBuf,
    /// Cores to run one worker each on, e.g. `1,3` or `0-3` (default: the last core); the
    /// controller runs on the others.
    #[arg(long)]
    cores: Option<String>,
    /// How workers wait when there is no traffic.
    #[arg(long, value_enum, default_value_t = Poll::Busy)]
    poll: Poll,
    /// Seconds before an idle learned MAC is forgotten.
    #[arg(long, default_value_t = DEFAULT_AGING_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    mac_aging: u64,
    /// Most MACs learned on one port.
    #[arg(long, default_value_t = DEFAULT_MAC_LIMIT)]
    mac_limit: u32,
    /// The MAC the switch routes with (default: the one in the state file,
    /// else a random locally administered address, then kept).
    #[arg(long)]
    router_mac: Option<ctl::MacAddr>,
    /// Seconds before a neighbour not confirmed by ARP/ND is forgotten.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    neigh_timeout: u64,
    /// Most tracked Service connections (a full table evicts connections
    /// not established, then refuses new ones: `conntrack_full`).
    #[arg(long, default_value_t = fastpath::services::conntrack::DEFAULT_LIMIT, value_parser = parse_ct_max)]
    ct_max: usize,
    /// Smallest Maglev table size: every Service's table has this many
    /// slots (the next prime) while it has at most a hundredth as many
    /// ready endpoints, so that endpoints coming and going move few flows;
    /// beyond that 4,093, 16,381, 65,521, ... slots (at least 100 per endpoint).
    #[arg(long, default_value_t = fastpath::services::maglev::DEFAULT_MIN_SIZE, value_parser = clap::value_parser!(u32).range(2..=1_000_003))]
    maglev_size: u32,
    /// The ports Services may use as NodePorts (Kubernetes' default range;
    /// keep it clear of the node's own services and ephemeral ports).
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    node_port_range: (u16, u16),
    /// How TAP ports move frames.
    #[arg(long, value_enum, default_value_t = TapIoArg::IoUring)]
    tap_io: TapIoArg,
    /// A group (name or gid) whose members may use the control socket
    /// besides root and vswitchd's own user: the socket file is given to it (mode 0660) and each
    /// client's credentials are checked when it connects.
    #[arg(long, value_name = "GROUP", value_parser = server::peer::resolve_group)]
    socket_group: Option<server::peer::Group>,
    /// Serve Prometheus metrics on this address and port (`GET /metrics`,
    /// e.g. `127.0.0.1:9477`); off by default.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_addr)]
    metrics: Option<std::net::SocketAddr>,
    /// Print the manual page (roff) and exit (scripts/install.sh).
    #[arg(long, hide = true)]
    man: bool,
    /// Print a shell completion script and exit (scripts/install.sh).
    #[arg(long, hide = true, value_name = "SHELL")]
    completion: Option<clap_complete::Shell>,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("'{s}' is not FIRST-LAST"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("'{p}' is not a port (1-65535)"))
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo > hi {
        return Err(format!("'{s}': the first port is above the last"));
    }
    Ok((lo, hi))
}

fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not a numeric address and port, such as 127.0.0.1:9477 or [::1]:9477")
    })
}

fn parse_ct_max(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(64..=16_777_216).contains(&n) {
        return Err(format!("{n}: must be 64 to 16777216"));
    }
    Ok(n)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe;
    // ignoring SIGPIPE makes writes to closed clients return EPIPE instead.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Lifts the locked-memory limit: libbpf and AF_XDP UMEM registration are
/// charged against it on some kernels, and the default (8 MiB) is too small.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit only reads the struct passed by reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Keeps this thread, the controller (and the threads it starts later),
/// off the workers' cores: a sweep of the connection table or a burst of
/// requests then never takes time from a worker, as VPP's main thread and
/// Open vSwitch's non-PMD threads stay off their workers' cores. When
/// every core has a worker, the controller stays where the kernel puts it.
fn keep_controller_off(available: &[usize], workers: &[usize]) {
    let rest: Vec<usize> = available
        .iter()
        .copied()
        .filter(|c| !workers.contains(c) && *c < libc::CPU_SETSIZE as usize)
        .collect();
    if rest.is_empty() {
        tracing::info!("every core has a worker: the controller shares them");
        return;
    }
    // SAFETY: cpu_set_t is a plain bit array, valid when zeroed; CPU_SET
    // writes within it (the cores are below CPU_SETSIZE, checked above),
    // and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in &rest {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::warn!(
            "cannot keep the controller off the workers' cores: {}",
            std::io::Error::last_os_error()
        );
    } else {
        tracing::debug!(cores = ?rest, "controller runs on the cores without a worker");
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    raise_memlock_limit();
    server::raise_fd_limit();
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let cores = match &args.cores {
        Some(list) => workers::parse_cores(list).map_err(anyhow::Error::msg)?,
        None => vec![available.last().copied().unwrap_or(0)],
    };
    if let Some(c) = cores
        .iter()
        .find(|c| !available.is_empty() && !available.contains(c))
    {
        anyhow::bail!("core {c} is not available (cores: {available:?})");
    }
    let poll = match args.poll {
        Poll::Busy => PollMode::Busy,
        Poll::Adaptive => PollMode::Adaptive,
    };
    let saved = state::load_or_recover(&args.state)?;
    if let Some(why) = &saved.recovered {
        tracing::error!("{why}");
    }
    let metrics = args
        .metrics
        .map(|addr| {
            server::http::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))
        })
        .transpose()?;
    let access = server::peer::Access::new(args.socket_group.clone());
    let listener = server::bind(&args.socket, args.socket_group.as_ref()).map_err(|e| {
        anyhow::anyhow!("cannot bind control socket {}: {e}", args.socket.display())
    })?;
    install_signal_handlers();

    let shared = snapshot::shared(Snapshot::default());
    fastpath::sys::quiet_libxdp();
    let conntrack = Arc::new(Conntrack::new(args.ct_max));
    let workers = Workers::start(&cores, poll, &shared, &conntrack)?;
    keep_controller_off(&available, &cores);
    let settings = Settings {
        socket: args.socket.clone(),
        state: args.state.clone(),
        poll,
        mac_aging_secs: args.mac_aging,
        mac_limit: args.mac_limit,
        router_mac: args.router_mac,
        neigh_timeout_secs: args.neigh_timeout,
        maglev_min_size: args.maglev_size,
        node_port_range: args.node_port_range,
        tap_io: match args.tap_io {
            TapIoArg::IoUring => TapIo::IoUring,
            TapIoArg::Syscalls => TapIo::Syscalls,
        },
    };
    let mut ctl = Controller::new(settings, workers, shared, conntrack);
    ctl.restore(saved.state, saved.recovered);
    tracing::info!(socket = %args.socket.display(), cores = ?cores, "vswitchd ready");
    let result = server::run(&mut ctl, listener, metrics, &access, &STOP);
    tracing::info!("vswitchd stopping");
    ctl.shutdown();
    let _ = std::fs::remove_file(&args.socket);
    result.map_err(Into::into)
}

/// `--man`, `--completion SHELL`: text made from the options' definitions.
fn print_generated(args: &Args) -> ExitCode {
    use clap::CommandFactory;
    let mut out = Vec::new();
    let written = match args.completion {
        Some(shell) => {
            clap_complete::generate(shell, &mut Args::command(), "vswitchd", &mut out);
            Ok(())
        }
        None => clap_mangen::Man::new(Args::command())
            .section("8")
            .render(&mut out),
    };
    match written.and_then(|()| std::io::Write::write_all(&mut std::io::stdout(), &out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.man || args.completion.is_some() {
        return print_generated(&args);
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
