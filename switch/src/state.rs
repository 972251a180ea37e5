//! The state file: the configuration that survives a restart.
//!
//! Written after every successful change, atomically: a temporary file in
//! the same directory, fsync, rename over the old file, fsync the directory.
//! A reader therefore sees the old or the new configuration, never a torn one.
//! The file it replaces stays as `<file>.bak`, the last good copy: a state
//! file that cannot be parsed at start is moved aside (`<file>.corrupt-<unix
//! time>`) and the copy is used instead (see [`load_or_recover`]).

use std::collections::BTreeMap;
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
    /// The program that added each address that one added (see
    /// `ctl::RouteSpec::owner`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addr_owners: BTreeMap<IpNet, String>,
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
            addr_owners: BTreeMap::new(),
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
    let bytes = match fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => return Err(StateError::Read { path: p, source }),
    };
    let parse = |source| StateError::Parse {
        path: p.clone(),
        source,
    };
    // The version first: a file of another format version is not corrupt,
    // whatever its shape.
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse)?;
    if let Some(found) = value.get("version").and_then(|v| v.as_u64())
        && found != u64::from(STATE_VERSION)
    {
        return Err(StateError::Version {
            path: p,
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_value(value).map_err(parse)
}

/// What [`load_or_recover`] found.
#[derive(Debug)]
pub struct Loaded {
    pub state: State,
    /// Set when the file could not be parsed: what was done about it.
    pub recovered: Option<String>,
}

/// The last good copy kept beside `path`.
pub fn backup_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

/// Reads the state file. One that cannot be parsed is moved aside with a
/// timestamp and the last good copy (`<file>.bak`) is read instead (or, if
/// that is unusable too, an empty configuration). A file that cannot be
/// read at all, or one written by another format version, is an error:
/// moving those aside could lose a configuration that is fine.
pub fn load_or_recover(path: &Path) -> Result<Loaded, StateError> {
    let source = match load(path) {
        Ok(state) => {
            return Ok(Loaded {
                state,
                recovered: None,
            });
        }
        Err(StateError::Parse { source, .. }) => source,
        Err(e) => return Err(e),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut aside = path.file_name().unwrap_or_default().to_os_string();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = path.with_file_name(aside);
    fs::rename(path, &aside).map_err(|e| StateError::Read {
        path: format!(
            "{} (moving it aside to {})",
            path.display(),
            aside.display()
        ),
        source: e,
    })?;
    let bak = backup_path(path);
    let (state, used) = match fs::metadata(&bak).map(|_| load(&bak)) {
        Ok(Ok(st)) => {
            // Put the copy in place now: a start that fails before its
            // first write must find it next time, not an empty path.
            let restored = fs::copy(&bak, aside_tmp(path)).and_then(|_| {
                File::open(aside_tmp(path))?.sync_all()?;
                fs::rename(aside_tmp(path), path)
            });
            if let Err(e) = restored {
                return Err(StateError::Read {
                    path: format!(
                        "{} (putting {} in its place)",
                        path.display(),
                        bak.display()
                    ),
                    source: e,
                });
            }
            (
                st,
                format!(
                    "using the last good copy {} (the configuration before the last change: that change is lost)",
                    bak.display()
                ),
            )
        }
        Ok(Err(e)) => {
            // Kept aside as well, so that the next write does not replace it.
            let mut name = bak.file_name().unwrap_or_default().to_os_string();
            name.push(format!(".corrupt-{stamp}"));
            let _ = fs::rename(&bak, bak.with_file_name(name));
            (
                State::default(),
                format!("the last good copy is unusable too ({e}), moved aside: starting empty"),
            )
        }
        Err(_) => (
            State::default(),
            format!(
                "there is no last good copy ({}): starting empty",
                bak.display()
            ),
        ),
    };
    Ok(Loaded {
        state,
        recovered: Some(format!(
            "state file {} is not valid ({source}); moved it to {}, {used}",
            path.display(),
            aside.display()
        )),
    })
}

/// A temporary name beside `path`.
fn aside_tmp(path: &Path) -> std::path::PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".restore.tmp");
    path.with_file_name(name)
}

/// Where [`save`] keeps the backup it replaced until the change is
/// settled: [`revert`] puts it back, [`settle`] lets it go.
fn prev_backup_path(path: &Path) -> std::path::PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(backup_path(path).file_name().unwrap_or_default());
    name.push(".prev");
    path.with_file_name(name)
}

/// Undoes the last [`save`]: the file it replaced is the state file again
/// (or, if it created the file, there is none) and the backup is the one
/// before. Used when what a saved change asked for could not be done, so
/// that the refused change leaves both files as they were.
pub fn revert(path: &Path) -> io::Result<()> {
    let bak = backup_path(path);
    match fs::rename(&bak, path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
        Err(e) => return Err(e),
    }
    match fs::rename(prev_backup_path(path), &bak) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The change the last [`save`] wrote stands: the backup it replaced is
/// not needed any more.
pub fn settle(path: &Path) {
    let _ = fs::remove_file(prev_backup_path(path));
}

/// Writes the state file atomically; the file it replaces becomes
/// `<file>.bak`.
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
    // The old file becomes the backup by a second name (a hard link; a
    // copy where the filesystem has no hard links), made under a temporary
    // name and renamed over the old backup, so that neither `path` nor the
    // backup is ever missing.
    let bak = backup_path(path);
    // The backup about to be replaced, kept for `revert`.
    let prev = prev_backup_path(path);
    match fs::remove_file(&prev) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    match fs::hard_link(&bak, &prev) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => {
            fs::copy(&bak, &prev)?;
        }
    }
    let bak_tmp = dir.join(format!(".{name}.bak.tmp"));
    match fs::remove_file(&bak_tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let linked = match fs::hard_link(path, &bak_tmp) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => fs::copy(path, &bak_tmp).map(|_| true)?,
    };
    if linked {
        fs::rename(&bak_tmp, &bak)?;
    } else {
        // No file to back up: a backup left from before is not the
        // previous state (which is "none"), and `revert` must not bring it
        // back.
        match fs::remove_file(&bak) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
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

    #[test]
    fn every_write_keeps_the_previous_file_and_a_corrupt_file_falls_back_to_it() {
        let dir = std::env::temp_dir().join(format!("vswitch-state-bak-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("state.json");
        let bak = backup_path(&path);
        assert_eq!(bak, dir.join("state.json.bak"));
        let mut first = State::default();
        first.ports.push(PortSpec::afxdp("veth1"));
        save(&path, &first).unwrap();
        assert!(!bak.exists(), "a first write has nothing to back up");
        let mut second = first.clone();
        second.ports.push(PortSpec::afxdp("veth2"));
        save(&path, &second).unwrap();
        assert_eq!(
            load(&bak).unwrap(),
            first,
            "the backup is the previous file"
        );
        assert_eq!(load(&path).unwrap(), second);

        // A torn or hand-edited file: moved aside, the backup used.
        fs::write(&path, "{ \"version\": 1, \"ports\": [").unwrap();
        let got = load_or_recover(&path).unwrap();
        assert_eq!(got.state, first);
        // The copy is back at the path before anything else happens: a start
        // that dies now finds it next time.
        assert_eq!(load(&path).unwrap(), first);
        let why = got.recovered.expect("recovery not reported");
        assert!(
            why.contains("not valid") && why.contains("state.json.bak"),
            "{why}"
        );
        let aside: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            })
            .collect();
        assert_eq!(aside.len(), 1, "one file moved aside");
        assert_eq!(
            fs::read_to_string(aside[0].path()).unwrap(),
            "{ \"version\": 1, \"ports\": [",
            "the corrupt file is kept as it was"
        );

        // Corrupt with an unusable backup: empty, and said.
        fs::write(&path, "garbage").unwrap();
        fs::write(&bak, "garbage too").unwrap();
        let got = load_or_recover(&path).unwrap();
        assert_eq!(got.state, State::default());
        assert!(got.recovered.unwrap().contains("starting empty"));

        // Another version is not "corrupt": an error, and the file stays,
        // even when its shape is new too.
        fs::write(
            &path,
            r#"{"version": 99, "ports": [{"name": "x", "new_field": 1}]}"#,
        )
        .unwrap();
        assert!(matches!(
            load_or_recover(&path),
            Err(StateError::Version { found: 99, .. })
        ));
        fs::write(&path, r#"{"version": 99}"#).unwrap();
        assert!(matches!(
            load_or_recover(&path),
            Err(StateError::Version { found: 99, .. })
        ));
        assert!(path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn revert_puts_back_the_file_and_the_backup_as_they_were() {
        let dir = std::env::temp_dir().join(format!("vswitch-state-rev-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("state.json");
        let bak = backup_path(&path);
        let names = || {
            let mut v: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let state = |n: usize| {
            let mut s = State::default();
            for i in 0..n {
                s.ports.push(PortSpec::afxdp(&format!("veth{i}")));
            }
            s
        };
        save(&path, &state(1)).unwrap();
        // Reverting the first write removes the file it created.
        revert(&path).unwrap();
        assert!(!path.exists() && !bak.exists());
        save(&path, &state(1)).unwrap();
        save(&path, &state(2)).unwrap();
        settle(&path);
        let before = (fs::read(&path).unwrap(), fs::read(&bak).unwrap(), names());
        save(&path, &state(3)).unwrap();
        revert(&path).unwrap();
        assert_eq!(
            (fs::read(&path).unwrap(), fs::read(&bak).unwrap(), names()),
            before,
            "file, backup and directory as before"
        );
        // Twice in a row, and a change that stands after them.
        save(&path, &state(3)).unwrap();
        revert(&path).unwrap();
        assert_eq!(
            (fs::read(&bak).unwrap(), names()),
            (before.1.clone(), before.2.clone())
        );
        save(&path, &state(4)).unwrap();
        settle(&path);
        assert_eq!(load(&path).unwrap(), state(4));
        assert_eq!(load(&bak).unwrap(), state(2));
        assert_eq!(names(), before.2);
        // The file removed behind the daemon's back: reverting the next
        // write leaves no file, and the backup as it was.
        fs::remove_file(&path).unwrap();
        save(&path, &state(5)).unwrap();
        revert(&path).unwrap();
        assert!(!path.exists());
        assert_eq!(load(&bak).unwrap(), state(2));
        fs::remove_dir_all(&dir).unwrap();
    }
}
