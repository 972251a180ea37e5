//! `trace` and `capture`: see what the switch does with packets.
//!
//! `trace inject` is one request. `trace live` and `capture` start a watch
//! in the daemon and read it until it ends (its count or duration), then
//! print (trace) or write pcapng (capture, with the pcap-file crate,
//! readable by tcpdump and Wireshark). Interrupted, they leave the daemon
//! to stop the watch once it goes unread (`ctl::WATCH_IDLE_MS`); a capture
//! file written so far stays whole, block by block.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ctl::cli::{CaptureArgs, Dir, Failure, Format, LiveArgs};
use ctl::{
    Client, Command, Direction, Reply, TraceReport, TraceStep, WatchData, WatchKindSpec, WatchSpec,
    from_hex,
};
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

use crate::output::{Align, Table, one_line};

/// How long a reader waits before asking again when nothing came.
const POLL: Duration = Duration::from_millis(50);

/// Set by Ctrl-C (SIGINT) while a watch is followed.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Starts a watch; once the daemon has taken it, `open` makes what the
/// reads go to (a capture file is created only then: a refused request
/// leaves an existing file alone), and each read is handed to `each` until
/// the watch is done, Ctrl-C, or `each` says the reader is gone (a closed
/// pipe). Returns what `open` made and the frames or packets the watch
/// lost. The watch is stopped at once on Ctrl-C and on any failure.
fn follow<S>(
    client: &mut Client,
    spec: WatchSpec,
    open: impl FnOnce() -> Result<S, Failure>,
    mut each: impl FnMut(&mut S, &WatchData) -> Result<Flow, Failure>,
) -> Result<(S, u64), Failure> {
    let failed = |e: ctl::ClientError| Failure::Request(e.to_string());
    // A second handler is refused (one invocation follows one watch).
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let id = match client.call(Command::WatchStart(spec)).map_err(failed)? {
        Reply::WatchStarted { id } => id,
        other => return Err(Failure::Request(format!("unexpected reply {other:?}"))),
    };
    let mut sink = match open() {
        Ok(s) => s,
        Err(e) => {
            let _ = client.call(Command::WatchStop { id });
            return Err(e);
        }
    };
    let mut dropped = 0;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = client.call(Command::WatchStop { id });
            return Ok((sink, dropped));
        }
        let data = match client.call(Command::WatchRead { id }).map_err(failed)? {
            Reply::WatchData(d) => d,
            other => return Err(Failure::Request(format!("unexpected reply {other:?}"))),
        };
        dropped = data.dropped;
        match each(&mut sink, &data) {
            Ok(Flow::More) => {}
            Ok(Flow::ReaderGone) => {
                let _ = client.call(Command::WatchStop { id });
                return Ok((sink, dropped));
            }
            Err(e) => {
                let _ = client.call(Command::WatchStop { id });
                return Err(e);
            }
        }
        if data.done {
            return Ok((sink, dropped));
        }
        if data.frames.is_empty() && data.traces.is_empty() {
            std::thread::sleep(POLL);
        }
    }
}

/// Whether a follower goes on.
enum Flow {
    More,
    /// Whoever reads the output went away (a closed pipe): end quietly.
    ReaderGone,
}

/// A write's outcome as a [`Flow`]: a closed pipe ends the run quietly.
fn written(r: std::io::Result<()>, what: &str) -> Result<Flow, Failure> {
    match r {
        Ok(()) => Ok(Flow::More),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Flow::ReaderGone),
        Err(e) => Err(Failure::Request(format!("cannot write {what}: {e}"))),
    }
}

/// `trace live`: prints each traced packet as it comes.
pub(crate) fn live(client: &mut Client, a: &LiveArgs, format: Format) -> Result<String, Failure> {
    // A duration alone traces every packet until it is over.
    let count = a
        .count
        .or(if a.duration.is_some() { None } else { Some(10) });
    let spec = WatchSpec {
        port: a.port.clone(),
        kind: WatchKindSpec::Trace,
        direction: Direction::In,
        filter: a.filter.clone(),
        count,
        duration_ms: a.duration.map(|s| s.saturating_mul(1000)),
        snaplen: None,
    };
    let (_, dropped) = follow(
        client,
        spec,
        || Ok(std::io::stdout().lock()),
        |out, d| {
            for t in &d.traces {
                let text = match format {
                    Format::Json => serde_json::to_string(t).unwrap_or_default() + "\n",
                    Format::Text => {
                        format!(
                            "{} worker {}: {}\n",
                            clock(t.ts_ns),
                            t.worker,
                            one_line(&t.ingress)
                        ) + &steps_text(&t.steps)
                    }
                };
                if let Flow::ReaderGone = written(
                    out.write_all(text.as_bytes()).and_then(|()| out.flush()),
                    "-",
                )? {
                    return Ok(Flow::ReaderGone);
                }
            }
            Ok(Flow::More)
        },
    )?;
    if dropped > 0 {
        eprintln!("vswitchctl: {dropped} packets not traced: this reader fell behind");
    }
    Ok(String::new())
}

/// `capture`: writes pcapng as frames come.
pub(crate) fn capture(client: &mut Client, a: &CaptureArgs) -> Result<String, Failure> {
    // 0, as for tcpdump: the whole frame.
    let snaplen = if a.snaplen == 0 {
        ctl::SNAPLEN_DEFAULT
    } else {
        a.snaplen
    };
    let spec = WatchSpec {
        port: a.port.clone(),
        kind: WatchKindSpec::Capture,
        direction: match a.direction {
            Dir::In => Direction::In,
            Dir::Out => Direction::Out,
            Dir::Both => Direction::Both,
        },
        filter: a.filter.clone(),
        count: a.count,
        duration_ms: a.duration.map(|s| s.saturating_mul(1000)),
        snaplen: Some(snaplen),
    };
    let name = a.write.display().to_string();
    let cannot = |e: &dyn std::fmt::Display| Failure::Request(format!("cannot write {name}: {e}"));
    let open = || {
        let sink: Box<dyn Write> = if a.write.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::fs::File::create(&a.write).map_err(|e| cannot(&e))?)
        };
        let mut w = PcapNgWriter::new(std::io::BufWriter::new(sink)).map_err(|e| cannot(&e))?;
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(a.port.clone())),
                InterfaceDescriptionOption::IfDescription(Cow::Borrowed("vswitch port")),
                // Timestamps in nanoseconds.
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .map_err(|e| cannot(&e))?;
        Ok((w, 0u64))
    };
    let ((_, frames), dropped) = follow(client, spec, open, |(w, frames), d| {
        for f in &d.frames {
            let data =
                from_hex(&f.data).map_err(|e| Failure::Request(format!("broken reply: {e}")))?;
            let block = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(f.ts_ns),
                original_len: f.len,
                data: Cow::Owned(data),
                // The direction bits of epb_flags: 1 inbound, 2 outbound.
                options: vec![EnhancedPacketOption::Flags(match f.dir {
                    Direction::Out => 2,
                    _ => 1,
                })],
            };
            match w.write_pcapng_block(block) {
                Ok(_) => *frames += 1,
                Err(pcap_file::PcapError::IoError(e)) => {
                    if let Flow::ReaderGone = written(Err(e), &name)? {
                        return Ok(Flow::ReaderGone);
                    }
                }
                Err(e) => return Err(cannot(&e)),
            }
        }
        written(w.get_mut().flush(), &name)
    })?;
    eprintln!(
        "vswitchctl: {frames} frame{} captured on {}{}",
        if frames == 1 { "" } else { "s" },
        a.port,
        if dropped > 0 {
            format!(", {dropped} dropped (the reader fell behind)")
        } else {
            String::new()
        }
    );
    Ok(String::new())
}

/// `HH:MM:SS.micros` (UTC) of a Unix time in nanoseconds.
fn clock(ts_ns: u64) -> String {
    let s = ts_ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ts_ns % 1_000_000_000 / 1000
    )
}

/// Each stage: its name, the verdict after it, the packet if it changed.
fn steps_text(steps: &[TraceStep]) -> String {
    let mut t = Table::new(&[
        ("stage", Align::Left),
        ("verdict", Align::Left),
        ("packet after the stage (when changed)", Align::Left),
    ])
    .indent(2);
    for s in steps {
        t.row([
            s.stage.clone(),
            s.verdict.clone(),
            s.frame.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

/// `trace inject`'s report.
pub(crate) fn trace_text(r: &TraceReport) -> String {
    let mut out = format!("in on {}: {}\n\n", one_line(&r.port), one_line(&r.ingress));
    out.push_str(&steps_text(&r.steps));
    let _ = writeln!(out, "\nverdict: {}", one_line(&r.verdict));
    for s in &r.sent {
        let _ = writeln!(
            out,
            "would send on {}: {}",
            one_line(&s.port),
            one_line(&s.frame)
        );
    }
    for n in &r.notes {
        let _ = writeln!(out, "note: {}", one_line(n));
    }
    out
}

/// A raw watch reply (`trace live` and `capture` print their own).
pub(crate) fn watch_text(reply: &Reply) -> String {
    match reply {
        Reply::WatchStarted { id } => format!("watch {id}\n"),
        Reply::WatchData(d) => format!(
            "{} frames, {} traces, {} dropped{}\n",
            d.frames.len(),
            d.traces.len(),
            d.dropped,
            if d.done { ", done" } else { "" }
        ),
        _ => String::new(),
    }
}
