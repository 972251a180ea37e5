//! A batch run stage by stage, recording what each stage did with chosen
//! packets: the verdict after the stage, and the packet itself when the
//! stage rewrote it (NAT, routing's MAC rewrite, a reply, VXLAN
//! unwrapping). The stages are the ones [`crate::pipeline::process`] runs,
//! from the same list; a traced batch ends exactly as an untraced one.

use crate::batch::{Batch, Verdict};
use crate::ctx::Ctx;
use crate::observe::describe::describe;
use crate::pipeline::STAGES;

/// What one stage did with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub stage: &'static str,
    /// The packet's verdict after the stage.
    pub verdict: Verdict,
    /// The packet after the stage, when the stage changed its bytes.
    pub frame: Option<String>,
}

/// One traced packet: as it arrived, and what each stage did.
pub type PacketTrace = (String, Vec<Step>);

/// Runs `batch` through every stage (as `pipeline::process` does) and
/// returns, for each packet at the indices `marked`, its trace. The output
/// stage queues or frees the frames, so what follows it is not read.
pub fn run(batch: &mut Batch, cx: &mut Ctx<'_>, marked: &[usize]) -> Vec<PacketTrace> {
    let marked: Vec<usize> = marked
        .iter()
        .copied()
        .filter(|&i| i < batch.len())
        .collect();
    let mut last: Vec<String> = marked
        .iter()
        .map(|&i| {
            let p = batch.pkts()[i];
            describe(cx.pool.data(p.addr, p.len))
        })
        .collect();
    let mut out: Vec<PacketTrace> = last.iter().map(|d| (d.clone(), Vec::new())).collect();
    for (name, stage) in STAGES {
        stage(batch, cx);
        for (k, &i) in marked.iter().enumerate() {
            let p = batch.pkts()[i];
            let readable = *name != "output" && p.alive();
            let frame = if readable {
                let now = describe(cx.pool.data(p.addr, p.len));
                (now != last[k]).then(|| {
                    last[k].clone_from(&now);
                    now
                })
            } else {
                None
            };
            out[k].1.push(Step {
                stage: name,
                verdict: p.verdict,
                frame,
            });
        }
    }
    batch.clear();
    out
}
