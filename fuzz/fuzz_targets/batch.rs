//! `vswitchctl batch` input: a file of command lines, parsed by the
//! library's [`BatchParser`] as `vswitchctl batch FILE` parses it, then
//! applied as one request to the configuration model as the daemon
//! applies it. One parser serves every input (building clap's definition
//! would take most of the time); every eighth input is parsed by a fresh
//! one too, as vswitchctl does, and must mean the same.
//!
//! Invariants: nothing panics; a refused file is a usage error that names
//! a line of the file in one line of text; an accepted file holds only
//! Service changes, one per command line, and means what its lines mean
//! one by one (the parser keeps nothing from one line to the next); the
//! request round-trips through the protocol; the model takes the batch or
//! says why not, and the state file keeps what it took.

#![no_main]

use std::cell::RefCell;

use ctl::cli::{BatchParser, Failure};
use ctl::{Command, MacAddr, Request};
use libfuzzer_sys::fuzz_target;
use switch::model::{Facts, Model};
use switch::state::State;

thread_local! {
    static PARSER: RefCell<BatchParser> = RefCell::new(BatchParser::new());
}

fn parse(text: &str) -> Result<Vec<Command>, Failure> {
    PARSER.with(|p| p.borrow_mut().parse(text))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let parsed = parse(text);
    if data.len() % 8 == 0 {
        assert_eq!(
            BatchParser::new().parse(text),
            parsed,
            "a fresh parser agrees"
        );
    }
    let commands = match parsed {
        Ok(commands) => commands,
        Err(Failure::Usage(m)) => {
            let n: usize = m
                .strip_prefix("line ")
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or_else(|| panic!("a refusal names its line: {m:?}"));
            assert!((1..=lines).contains(&n), "line {n} of {lines}: {m:?}");
            assert!(!m.contains('\n'), "a refusal is one line: {m:?}");
            return;
        }
        Err(other) => {
            panic!("parsing a batch sends nothing, so it cannot fail a request: {other:?}")
        }
    };
    let counted = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(commands.len(), counted, "one command per command line");
    for c in &commands {
        assert!(
            matches!(
                c,
                Command::ServiceAdd(_)
                    | Command::ServiceBackends { .. }
                    | Command::ServiceDel { .. }
            ),
            "only Service changes are batched: {c:?}"
        );
    }
    // Line by line, the same commands: nothing carries over between lines.
    let alone: Vec<Command> = text
        .lines()
        .flat_map(|l| parse(l).expect("a line of an accepted batch is accepted alone"))
        .collect();
    assert_eq!(alone, commands, "a line means the same alone");

    let req = Request::new(Command::Batch { commands });
    let back: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap())
        .expect("a batch request serialises to what parses");
    assert_eq!(back, req);
    let facts = Facts {
        views: Vec::new(),
        built: Vec::new(),
        node_ports: (30000, 32767),
    };
    match Model::default().apply(&req.command, &facts) {
        Ok(next) => {
            let st = next.state(MacAddr([2, 0, 0, 0, 0, 1]));
            let json = serde_json::to_string(&st).unwrap();
            let back: State = serde_json::from_str(&json).expect("the state file reads back");
            assert_eq!(back, st, "the state file keeps the batch's Services");
        }
        Err(e) => assert!(!e.0.is_empty(), "a refusal says why"),
    }
});
