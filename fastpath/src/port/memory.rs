//! In-memory ports for unit tests and benchmarks.
//!
//! A [`MemPort`] receives what a test injects and captures what the switch
//! sends. In reflect mode it instead turns every transmitted frame around
//! (swapping source and destination MAC, like a traffic reflector) and
//! offers it again on receive without copying, which lets a benchmark keep
//! a fixed set of frames circulating through the pipeline.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{Port, PortGone, PortMode, RxFrame};
use crate::PortId;
use crate::pool::FramePool;
use crate::tx::TxFrame;

/// What the test side of a [`MemPort`] sees.
#[derive(Default)]
pub struct MemWire {
    /// Frames waiting to be received by the switch.
    pub inbox: VecDeque<Vec<u8>>,
    /// Frames the switch sent.
    pub outbox: Vec<Vec<u8>>,
    /// When set, the port reports itself gone on its next use.
    pub gone: bool,
    /// When set, transmit accepts at most this many frames per burst.
    pub tx_limit: Option<usize>,
}

/// Handle shared between a [`MemPort`] and the test driving it.
pub type MemHandle = Arc<Mutex<MemWire>>;

/// An in-memory port.
pub struct MemPort {
    id: PortId,
    wire: Option<MemHandle>,
    reflect: VecDeque<(u32, u32)>,
}

impl MemPort {
    /// A port driven by a test through the returned handle.
    pub fn new(id: PortId) -> (Self, MemHandle) {
        let wire = MemHandle::default();
        (
            MemPort {
                id,
                wire: Some(wire.clone()),
                reflect: VecDeque::new(),
            },
            wire,
        )
    }

    /// A reflecting port (benchmarks): lock-free, no copies.
    pub fn reflector(id: PortId) -> Self {
        MemPort {
            id,
            wire: None,
            reflect: VecDeque::with_capacity(8192),
        }
    }

    /// Puts a frame in a reflector's receive queue, as if it had been sent to it.
    pub fn preload(&mut self, pool: &mut FramePool, bytes: &[u8]) -> bool {
        let Some((addr, len)) = pool.write_frame(bytes) else {
            return false;
        };
        pool.lend(addr, self.id);
        self.reflect.push_back((addr, len));
        true
    }
}

impl Port for MemPort {
    fn rx_burst(&mut self, pool: &mut FramePool, out: &mut [RxFrame]) -> Result<usize, PortGone> {
        let Some(wire) = &self.wire else {
            let mut n = 0;
            while n < out.len() {
                let Some((addr, len)) = self.reflect.pop_front() else {
                    break;
                };
                let Some(addr) = pool.reclaim(addr, self.id) else {
                    continue;
                };
                out[n] = RxFrame::new(addr, len);
                n += 1;
            }
            return Ok(n);
        };
        let mut w = wire.lock().expect("test wire poisoned");
        if w.gone {
            return Err(PortGone("memory port unplugged".into()));
        }
        let mut n = 0;
        // Stop while frames wait rather than lose one: a real port leaves
        // them in the kernel's queue when the pool is empty.
        while n < out.len() && pool.available() > 0 {
            let Some(bytes) = w.inbox.pop_front() else {
                break;
            };
            let Some(frame) = pool.write_frame(&bytes) else {
                break;
            };
            // A frame longer than the pool's frames is passed on with its
            // true length so that the parse stage counts it as malformed.
            out[n] = RxFrame::new(frame.0, frame.1.max(bytes.len() as u32));
            n += 1;
        }
        Ok(n)
    }

    fn tx_burst(&mut self, pool: &mut FramePool, frames: &[TxFrame]) -> Result<usize, PortGone> {
        // Like a NIC, the port completes a partial checksum it is handed.
        for f in frames.iter().filter(|f| f.gso.is_partial()) {
            crate::gso::complete(pool.data_mut(f.addr, f.len), f.gso);
        }
        let Some(wire) = &self.wire else {
            for f in frames {
                let d = pool.data_mut(f.addr, 12);
                if d.len() == 12 {
                    let (dst, src) = d.split_at_mut(6);
                    dst.swap_with_slice(src);
                }
                pool.lend(f.addr, self.id);
                self.reflect.push_back((f.addr, f.len));
            }
            return Ok(frames.len());
        };
        let mut w = wire.lock().expect("test wire poisoned");
        if w.gone {
            return Err(PortGone("memory port unplugged".into()));
        }
        let n = w.tx_limit.map_or(frames.len(), |l| l.min(frames.len()));
        for f in &frames[..n] {
            // Like the real ports: a frame the worker does not hold is
            // counted and skipped.
            if !pool.holds(f.addr) {
                pool.error();
                continue;
            }
            w.outbox.push(pool.data(f.addr, f.len).to_vec());
            pool.free(f.addr);
        }
        Ok(n)
    }

    fn mode(&self) -> PortMode {
        PortMode {
            mode: "memory",
            zero_copy: true,
            io: None,
            tx_csum: false,
        }
    }
}
