//! The `CNI_*` environment a runtime runs the plugin with, checked per verb.

use std::path::PathBuf;

use crate::spec::{Error, code};

/// What the runtime asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
            Verb::Version => "VERSION",
            Verb::Status => "STATUS",
            Verb::Gc => "GC",
        }
    }
}

/// The environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub verb: Verb,
    pub container_id: String,
    /// The pod's network namespace (a path); may be empty for DEL.
    pub netns: String,
    pub ifname: String,
    /// Directories to look for plugins in (IPAM).
    pub path: Vec<PathBuf>,
}

/// Linux's longest interface name.
pub const IFNAMSIZ: usize = 15;

impl Env {
    /// Reads the environment through `var` (the process's, or a test's).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let verb = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Verb::Add,
            Some("DEL") => Verb::Del,
            Some("CHECK") => Verb::Check,
            Some("VERSION") => Verb::Version,
            Some("STATUS") => Verb::Status,
            Some("GC") => Verb::Gc,
            Some(other) => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!(
                        "CNI_COMMAND '{other}' is not one of ADD, DEL, CHECK, VERSION, STATUS, GC"
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    code::INVALID_ENV,
                    "CNI_COMMAND is not set: vswitch-cni is run by a container runtime \
                     (see the CNI specification)",
                ));
            }
        };
        let get = |name: &str| var(name).unwrap_or_default();
        let env = Env {
            verb,
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            path: get("CNI_PATH")
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        };
        env.check()?;
        Ok(env)
    }

    /// What each verb needs: ADD and CHECK everything; DEL a container and
    /// an interface (the namespace may be gone); GC and STATUS the path
    /// (for IPAM); VERSION nothing.
    fn check(&self) -> Result<(), Error> {
        let missing = |name: &str| {
            Err(Error::new(
                code::INVALID_ENV,
                format!("{name} is required for {}", self.verb.name()),
            ))
        };
        let needs_container = matches!(self.verb, Verb::Add | Verb::Del | Verb::Check);
        if needs_container {
            if self.container_id.is_empty() {
                return missing("CNI_CONTAINERID");
            }
            if !valid_container_id(&self.container_id) {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!(
                        "CNI_CONTAINERID '{}' may hold only letters, digits, '_', '.' and '-'",
                        self.container_id
                    ),
                ));
            }
            if self.ifname.is_empty() {
                return missing("CNI_IFNAME");
            }
            if !valid_ifname(&self.ifname) {
                return Err(Error::new(
                    code::INVALID_ENV,
                    format!(
                        "CNI_IFNAME '{}' is not an interface name (1-{IFNAMSIZ} characters, \
                         no '/', ':' or whitespace, not '.' or '..')",
                        self.ifname
                    ),
                ));
            }
        }
        if matches!(self.verb, Verb::Add | Verb::Check) && self.netns.is_empty() {
            return missing("CNI_NETNS");
        }
        Ok(())
    }
}

/// The spec's rule for container ids.
pub fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// Linux's rule for interface names.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Env, Error> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::read(|k| map.get(k).cloned())
    }

    #[test]
    fn each_verb_gets_what_it_needs() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni:/opt/cni/bin"),
        ];
        let env = read(&full).unwrap();
        assert_eq!(env.verb, Verb::Add);
        assert_eq!(env.path.len(), 2);
        // DEL without a namespace (it may be gone) is fine.
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert!(read(&del).is_ok());
        assert!(read(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(read(&[("CNI_COMMAND", "GC")]).is_ok());
        assert!(read(&[("CNI_COMMAND", "STATUS")]).is_ok());
    }

    #[test]
    fn a_bad_environment_is_code_4() {
        let cases: &[&[(&str, &str)]] = &[
            &[],
            &[("CNI_COMMAND", "UPDATE")],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_NETNS", "/x"),
            ],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a/b"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
            ],
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0-is-far-too-long"),
            ],
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "a"),
                ("CNI_IFNAME", ".."),
            ],
        ];
        for vars in cases {
            let e = read(vars).unwrap_err();
            assert_eq!(e.code, code::INVALID_ENV, "{vars:?}: {e}");
        }
    }
}
