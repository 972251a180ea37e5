//! `vswitch-cni`: the CNI plugin of vswitch, installed as `vswitch` in the
//! runtime's CNI bin directory. A container runtime runs it with the
//! `CNI_*` environment and the network configuration on stdin; it attaches
//! the pod to vswitchd (a TAP vswitchd creates in the pod, or a veth pair
//! whose host end vswitchd attaches through AF_XDP), with addresses from
//! the configured IPAM plugin, and prints the result or a CNI error as
//! JSON on stdout.
//!
//! Code map: `spec` holds the protocol's messages and version rules, `env`
//! the environment, `ipam` the delegation to the IPAM plugin, `plan` the
//! attachment computed with no effect (names, MAC, MTU, gateways, routes),
//! `switch` the requests to vswitchd, `link` the netlink work in the pod's
//! and the host's namespace, `store` the records of what was created (and
//! the lock per network); `add`, `del` (DEL and GC) and `check` (CHECK and
//! STATUS) are the verbs.

mod add;
mod check;
mod del;
mod env;
mod ipam;
mod link;
mod plan;
mod spec;
mod store;
mod switch;

use std::io::{Read, Write};
use std::process::ExitCode;

use env::{Env, Verb};
use spec::{Error, LATEST, NetConf, SUPPORTED, code};

/// What a successful call prints.
enum Output {
    Json(serde_json::Value),
    Nothing,
}

fn run(env: &Env, raw: &[u8]) -> Result<Output, (Error, String)> {
    if env.verb == Verb::Version {
        return Ok(Output::Json(serde_json::json!({
            "cniVersion": LATEST,
            "supportedVersions": SUPPORTED,
        })));
    }
    let conf = NetConf::parse(raw).map_err(|e| (e, spec::answer_version(raw)))?;
    let version = conf.cni_version.clone();
    let with_version = |e: Error| (e, version.clone());
    match env.verb {
        Verb::Add => add::add(&conf, raw, env)
            .map(|r| Output::Json(serde_json::to_value(r).expect("a result serialises"))),
        Verb::Del => del::del(&conf, raw, env).map(|()| Output::Nothing),
        Verb::Check => check::check(&conf, raw, env).map(|()| Output::Nothing),
        Verb::Status => check::status(&conf, raw, env).map(|()| Output::Nothing),
        Verb::Gc => conf
            .require("1.1.0", "GC")
            .and_then(|()| del::gc(&conf, raw, env))
            .map(|()| Output::Nothing),
        Verb::Version => unreachable!("answered above"),
    }
    .map_err(with_version)
}

fn main() -> ExitCode {
    // Run by hand with no environment: say so rather than wait for stdin.
    if std::env::var_os("CNI_COMMAND").is_none() {
        let e = Env::read(|_| None).expect_err("no CNI_COMMAND is an error");
        return fail(&e, LATEST);
    }
    let mut raw = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut raw) {
        let e = Error::new(code::IO, "cannot read the configuration from stdin")
            .with_details(e.to_string());
        return fail(&e, LATEST);
    }
    let env = match Env::read(|k| std::env::var(k).ok()) {
        Ok(env) => env,
        Err(e) => return fail(&e, &spec::answer_version(&raw)),
    };
    match run(&env, &raw) {
        Ok(Output::Json(v)) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(Output::Nothing) => ExitCode::SUCCESS,
        Err((e, version)) => fail(&e, &version),
    }
}

/// Prints the error object on stdout (as the spec asks) and a line on
/// stderr for whoever runs the plugin by hand.
fn fail(e: &Error, version: &str) -> ExitCode {
    let _ = writeln!(std::io::stdout().lock(), "{}", e.to_json(version));
    eprintln!("vswitch-cni: {e}");
    ExitCode::FAILURE
}
