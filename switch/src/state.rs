//! The state file: the configuration that survives a restart.
//!
//! Written after every successful change, atomically: a temporary file in
//! the same directory, fsync, rename over the old file, fsync the directory.
//! A reader therefore sees the old or the new configuration, never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use ctl::{MacAddr, PortSpec, RouteSpec, ServiceSpec};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Version of the state file format.
pub const STATE_VERSION: u32 = 1;

/// A static FDB entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticMac {
    pub mac: MacAddr,
    pub port: String,
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub fdb: Vec<StaticMac>,
    /// The MAC the switch routes with; chosen at first start and kept, so
    /// pods' ARP caches stay right across restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_mac: Option<MacAddr>,
    #[serde(default)]
    pub addrs: Vec<IpNet>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            ports: Vec::new(),
            fdb: Vec::new(),
            router_mac: None,
            addrs: Vec::new(),
            routes: Vec::new(),
            services: Vec::new(),
        }
    }
}

/// Errors reading the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("state file {path} is not valid: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}, this vswitchd reads version {STATE_VERSION}")]
    Version { path: String, found: u32 },
}

/// Reads the state file; a missing file is an empty configuration.
pub fn load(path: &Path) -> Result<State, StateError> {
    let p = path.display().to_string();
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => return Err(StateError::Read { path: p, source }),
    };
    let state: State = serde_json::from_str(&text).map_err(|source| StateError::Parse {
        path: p.clone(),
        source,
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Version {
            path: p,
            found: state.version,
        });
    }
    Ok(state)
}

/// Writes the state file atomically.
pub fn save(path: &Path, state: &State) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir)?;
    let mut text = serde_json::to_string_pretty(state).map_err(io::Error::other)?;
    text.push('\n');
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    // The new state is in place: failing to make the rename durable must not
    // turn into a refusal of a change that has already happened.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(
            "state file {} written, but syncing its directory failed: {e}",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("vswitch-state-test-{}", std::process::id()));
        let path = dir.join("sub/state.json");
        assert_eq!(load(&path).unwrap(), State::default());
        let mut s = State::default();
        s.ports.push(PortSpec::afxdp("veth1"));
        s.fdb.push(StaticMac {
            mac: "02:00:00:00:00:01".parse().unwrap(),
            port: "veth1".into(),
        });
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        fs::write(&path, "{ nope").unwrap();
        assert!(matches!(load(&path), Err(StateError::Parse { .. })));
        fs::write(&path, r#"{"version": 99}"#).unwrap();
        assert!(matches!(
            load(&path),
            Err(StateError::Version { found: 99, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
