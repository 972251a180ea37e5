//! The control protocol: request lines as a client would send them
//! (`batch` requests among them), applied one after another to the
//! configuration model as the daemon applies them.
//!
//! Invariants: nothing panics; a request that parses serialises and parses
//! back equal; the state file's form of every model reached reads back
//! equal (the file never loses what it held). A refused request leaves the
//! model as it was by construction (`Model::apply` works on a copy), so
//! that is not checked here.

#![no_main]

use ctl::{MacAddr, Request};
use libfuzzer_sys::fuzz_target;
use switch::model::{Facts, Model};
use switch::state::State;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let facts = Facts {
        views: Vec::new(),
        built: Vec::new(),
        node_ports: (30000, 32767),
    };
    let mut model = Model::default();
    for line in text.lines().take(64) {
        let Ok(req) = serde_json::from_str::<Request>(line) else {
            continue;
        };
        let again: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap())
            .expect("a request serialises to what parses");
        assert_eq!(again, req);
        match model.apply(&req.command, &facts) {
            Ok(next) => {
                let st = next.state(MacAddr([2, 0, 0, 0, 0, 1]));
                let json = serde_json::to_string(&st).unwrap();
                let back: State = serde_json::from_str(&json).expect("the state file reads back");
                assert_eq!(back, st, "the state file keeps the model");
                model = next;
            }
            Err(e) => assert!(!e.0.is_empty(), "a refusal says why"),
        }
    }
});
