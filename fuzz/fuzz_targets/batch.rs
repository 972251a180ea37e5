//! `vswitchctl batch` input: a file of command lines, parsed by the
//! library's [`BatchParser`] as `vswitchctl batch FILE` parses it, then
//! applied as one request to the configuration model as the daemon
//! applies it. One parser serves every input (building clap's definition
//! would take most of the time); inputs whose length is a multiple of 8
//! are parsed by a fresh one too, as vswitchctl does, and must mean the
//! same.
//!
//! Invariants: nothing panics; a refused file names its first bad line:
//! line N is a command line, it fails alone with the same message, and
//! every command line before it parses alone; an accepted file holds only
//! Service changes, one per command line, and means what its lines mean
//! one by one (the parser keeps nothing from one line to the next); the
//! request round-trips through the protocol; the model takes the batch
//! exactly when it takes its commands one after another, ending in the
//! same model (else it names the first refused command), and the state
//! file keeps what it took.

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

/// Whether a line of a batch holds a command (not blank, not a comment).
fn is_command(line: &str) -> bool {
    let line = line.trim();
    !line.is_empty() && !line.starts_with('#')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    if data.len() % 8 == 0 {
        assert_eq!(
            BatchParser::new().parse(text),
            parsed,
            "a fresh parser agrees"
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    let commands = match parsed {
        Ok(commands) => commands,
        Err(Failure::Usage(m)) => {
            let (n, why) = m
                .strip_prefix("line ")
                .and_then(|rest| rest.split_once(": "))
                .and_then(|(n, why)| Some((n.parse::<usize>().ok()?, why)))
                .unwrap_or_else(|| panic!("a refusal names its line: {m:?}"));
            assert!(
                (1..=lines.len()).contains(&n),
                "line {n} of {}: {m:?}",
                lines.len()
            );
            let bad = lines[n - 1];
            assert!(is_command(bad), "line {n} is a command line: {bad:?}");
            assert_eq!(
                parse(bad),
                Err(Failure::Usage(format!("line 1: {why}"))),
                "line {n} fails alone as in the file"
            );
            for (i, l) in lines[..n - 1].iter().enumerate() {
                assert!(
                    parse(l).is_ok(),
                    "line {} before the bad one parses: {l:?}",
                    i + 1
                );
            }
            return;
        }
        Err(other) => {
            panic!("parsing a batch sends nothing, so it cannot fail a request: {other:?}")
        }
    };
    let counted = lines.iter().filter(|l| is_command(l)).count();
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
    let alone: Vec<Command> = lines
        .iter()
        .flat_map(|l| parse(l).expect("a line of an accepted batch is accepted alone"))
        .collect();
    assert_eq!(alone, commands, "a line means the same alone");

    let facts = Facts {
        views: Vec::new(),
        built: Vec::new(),
        node_ports: (30000, 32767),
    };
    // The commands one after another, as separate requests would apply them.
    let mut one_by_one = Ok(Model::default());
    for (i, c) in commands.iter().enumerate() {
        if let Ok(m) = &one_by_one {
            one_by_one = m.apply(c, &facts).map_err(|_| i + 1);
        }
    }
    let req = Request::new(Command::Batch { commands });
    let back: Request = serde_json::from_str(&serde_json::to_string(&req).unwrap())
        .expect("a batch request serialises to what parses");
    assert_eq!(back, req);
    match (Model::default().apply(&req.command, &facts), one_by_one) {
        (Ok(next), Ok(each)) => {
            assert_eq!(next, each, "a batch ends where its commands one by one end");
            let st = next.state(MacAddr([2, 0, 0, 0, 0, 1]));
            let json = serde_json::to_string(&st).unwrap();
            let back: State = serde_json::from_str(&json).expect("the state file reads back");
            assert_eq!(back, st, "the state file keeps the batch's Services");
            assert_eq!(
                st.services.len(),
                next.services.len(),
                "the state file holds every Service"
            );
        }
        (Err(e), Err(first)) => assert!(
            e.0.starts_with(&format!("batch command {first}: ")),
            "the refusal names the first refused command ({first}): {}",
            e.0
        ),
        (got, each) => panic!(
            "the batch gave {:?}, its commands one by one {:?}",
            got.map(|_| ()),
            each.map(|_| ())
        ),
    }
});
