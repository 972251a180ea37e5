//! The virtio-net header a TAP port with offloads reads before each frame:
//! whatever the header and frame say, reading and accepting them neither
//! panics nor reaches outside the frame, and a header the switch writes
//! for a frame it accepted describes that frame again.

#![no_main]

use fastpath::gso::{Gso, VnetHdr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(h) = VnetHdr::read(data) else {
        return;
    };
    let mut frame = data[10..].to_vec();
    let gso = h.accept(&mut frame);
    if gso == Gso::INVALID {
        return;
    }
    assert_eq!(
        frame.len(),
        data.len() - 10,
        "accept keeps the frame's length"
    );
    if let Some(out) = VnetHdr::for_frame(&frame, gso) {
        let mut b = [0u8; 10];
        out.write(&mut b);
        assert_eq!(VnetHdr::read(&b), Some(out));
        let mut again = frame.clone();
        let g2 = out.accept(&mut again);
        assert_ne!(
            g2,
            Gso::INVALID,
            "the header written for {gso:?} describes the frame: {out:?}"
        );
    }
    let _ = fastpath::gso::segment_ip_len(&frame, gso);
});
