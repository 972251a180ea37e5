//! Who may use the control socket: the peer's credentials, read from the
//! kernel when it connects (`SO_PEERCRED`, `SO_PEERGROUPS`), against root,
//! the daemon's own user and the group given with `--socket-group`.
//!
//! The socket file's mode (0660, group set to `--socket-group`) already
//! keeps others from connecting; the check here is what holds when it does
//! not: a process with `CAP_DAC_OVERRIDE` but no other privilege, a socket
//! file whose mode an operator widened. (The credentials are those of the
//! process that connected: a connection an admitted process hands on stays
//! admitted, as with any unix socket.)

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;

/// A group allowed to use the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub gid: libc::gid_t,
    /// As the operator named it (a name or a number).
    pub name: String,
}

/// Resolves `--socket-group`: a group name from the system's group
/// database, or a numeric gid.
pub fn resolve_group(spec: &str) -> Result<Group, String> {
    if let Ok(gid) = spec.parse::<libc::gid_t>() {
        return Ok(Group {
            gid,
            name: spec.to_string(),
        });
    }
    let name = CString::new(spec).map_err(|_| format!("'{spec}' is not a group name"))?;
    // SAFETY: a group is plain C data, valid all zero.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // A group with many members (from LDAP, say) needs a larger buffer:
    // ERANGE says so. Only the gid is kept, not pointers into the buffer.
    let mut size = 16 << 10;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: every pointer refers to live memory of the stated size.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && size < 16 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up group '{spec}': {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        break;
    }
    if found.is_null() {
        return Err(format!("no group named '{spec}'"));
    }
    Ok(Group {
        gid: grp.gr_gid,
        name: spec.to_string(),
    })
}

/// The credentials of a connected peer, as they were when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub pid: libc::pid_t,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups.
    pub groups: Vec<libc::gid_t>,
}

/// Reads the credentials of the process at the other end of `sock`.
pub fn peer(sock: &impl AsRawFd) -> io::Result<Peer> {
    let fd = sock.as_raw_fd();
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a ucred of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        groups: peer_groups(fd)?,
    })
}

/// `SO_PEERGROUPS`: the kernel answers ERANGE with the size it needs when
/// the buffer is too small.
fn peer_groups(fd: libc::c_int) -> io::Result<Vec<libc::gid_t>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = std::mem::size_of_val(groups.as_slice()) as libc::socklen_t;
        // SAFETY: `groups` holds `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            return Err(err);
        }
        groups.resize(n, 0);
    }
}

/// Who is let in.
#[derive(Debug, Clone)]
pub struct Access {
    /// The daemon's own user (root, or the user a unit runs it as).
    pub owner: libc::uid_t,
    pub group: Option<Group>,
}

impl Access {
    pub fn new(group: Option<Group>) -> Self {
        Access {
            // SAFETY: geteuid cannot fail.
            owner: unsafe { libc::geteuid() },
            group,
        }
    }

    /// Root, the daemon's own user and members of the socket group (as
    /// primary or supplementary group) are let in; anyone else is told why
    /// not.
    pub fn check(&self, p: &Peer) -> Result<(), String> {
        if p.uid == 0 || p.uid == self.owner {
            return Ok(());
        }
        if let Some(g) = &self.group
            && (p.gid == g.gid || p.groups.contains(&g.gid))
        {
            return Ok(());
        }
        let user = if self.owner == 0 {
            String::new()
        } else {
            format!(", uid {} (vswitchd's user)", self.owner)
        };
        let allowed = match &self.group {
            Some(g) if g.name == g.gid.to_string() => {
                format!("root{user} or members of group {}", g.gid)
            }
            Some(g) => format!("root{user} or members of group {} (gid {})", g.name, g.gid),
            None => format!("root{user} only (vswitchd runs without --socket-group)"),
        };
        Err(format!(
            "permission denied: the control socket admits {allowed}; this client is uid {} gid {} (pid {})",
            p.uid, p.gid, p.pid
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn peer_of(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn root_owner_and_group_members_only() {
        let g = Group {
            gid: 4242,
            name: "vswitch".into(),
        };
        let a = Access {
            owner: 1000,
            group: Some(g),
        };
        assert!(a.check(&peer_of(0, 0, &[])).is_ok());
        assert!(a.check(&peer_of(1000, 1000, &[])).is_ok());
        assert!(a.check(&peer_of(65534, 4242, &[])).is_ok());
        assert!(a.check(&peer_of(65534, 65534, &[27, 4242])).is_ok());
        let e = a.check(&peer_of(65534, 65534, &[27])).unwrap_err();
        assert!(
            e.contains("root, uid 1000 (vswitchd's user) or members of group vswitch (gid 4242)")
                && e.contains("uid 65534"),
            "{e}"
        );
        let none = Access {
            owner: 0,
            group: None,
        };
        let e = none.check(&peer_of(1000, 4242, &[4242])).unwrap_err();
        assert!(e.contains("root only"), "{e}");
    }

    #[test]
    fn credentials_of_a_socket_pair_are_our_own() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer(&a).unwrap();
        assert_eq!(p.pid, std::process::id() as libc::pid_t);
        // SAFETY: these calls cannot fail; `own` holds what getgroups is told.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        assert_eq!((p.uid, p.gid), (uid, gid));
        let mut own = vec![0 as libc::gid_t; 1024];
        // SAFETY: `own` holds `own.len()` gids.
        let n = unsafe { libc::getgroups(own.len() as libc::c_int, own.as_mut_ptr()) };
        own.truncate(n as usize);
        own.sort_unstable();
        let mut got = p.groups.clone();
        got.sort_unstable();
        assert_eq!(got, own);
    }

    #[test]
    fn groups_by_name_or_number() {
        assert_eq!(resolve_group("4242").unwrap().gid, 4242);
        assert_eq!(resolve_group("root").unwrap().gid, 0);
        let e = resolve_group("no-such-group-here").unwrap_err();
        assert!(e.contains("no group named"), "{e}");
    }
}
