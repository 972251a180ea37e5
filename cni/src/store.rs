//! What the plugin created, one record per attachment, under
//! `dataDir/NETWORK/`, written before anything is made: DEL finds the port
//! and the veth from it even when the container is gone (and without a
//! record removes no port or link: what it would name may be someone
//! else's), GC lists the attachments it owns, and a port vswitchd could
//! not remove (it was restarting) stays marked until a later call removes
//! it. A lock file serialises the plugin's calls on one
//! network, so concurrent ADDs and DELs of different containers never see
//! each other's half-made state.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{Attach, Attachment, Error, Route, code};

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    /// vswitchd's port (and, for afxdp, the host end of the veth).
    pub port: String,
    pub attach: Attach,
    pub ips: Vec<IpAddr>,
    pub mac: String,
    /// The routes ADD gave the pod (what CHECK checks).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The MTU ADD gave the pod's interface.
    #[serde(default)]
    pub mtu: u32,
    /// Written before ADD makes anything, cleared once all is made: a
    /// record still `creating` is an ADD that was cut short.
    #[serde(default)]
    pub creating: bool,
    /// DEL could not reach vswitchd: the port is still to be removed.
    #[serde(default)]
    pub port_pending: bool,
}

impl Record {
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// The records of one network, held under its lock.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

fn io_error(what: String, e: std::io::Error) -> Error {
    Error::new(code::IO, what).with_details(e.to_string())
}

impl Store {
    /// Opens (creating) the network's directory and takes its lock,
    /// waiting for another call of the plugin to finish.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, Error> {
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error(format!("cannot create {}", dir.display()), e))?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(format!("cannot open {}", lock_path.display()), e))?;
        // SAFETY: `lock` is an open file for the duration of the call.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error(
                format!("cannot lock {}", lock_path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Store { dir, _lock: lock })
    }

    /// `ID:IFNAME.json`: neither a container id nor an interface name may
    /// hold ':', so two attachments never share a file.
    fn path(&self, a: &Attachment) -> PathBuf {
        self.dir
            .join(format!("{}:{}.json", a.container_id, a.ifname))
    }

    pub fn get(&self, a: &Attachment) -> Result<Option<Record>, Error> {
        let path = self.path(a);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::new(code::DECODE, format!("cannot read {}", path.display()))
                    .with_details(e.to_string())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Writes the record whole (a temporary file renamed over the old).
    pub fn put(&self, r: &Record) -> Result<(), Error> {
        let path = self.path(&r.attachment());
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(r).expect("a record serialises");
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| io_error(format!("cannot write {}", path.display()), e))
    }

    pub fn remove(&self, a: &Attachment) -> Result<(), Error> {
        let path = self.path(a);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(format!("cannot remove {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Every record of the network (unreadable ones are skipped: a record
    /// being written is a temporary file until it is whole).
    pub fn all(&self) -> Result<Vec<Record>, Error> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| io_error(format!("cannot list {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Ok(bytes) = std::fs::read(&p)
                && let Ok(r) = serde_json::from_slice::<Record>(&bytes)
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok(out)
    }
}
