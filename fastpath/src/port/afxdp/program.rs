//! The XDP program of AF_XDP pod ports: libxdp's own redirect program
//! (`xsk_def_prog`, from the object libxdp embeds), which sends each RX
//! queue's frames to the socket in its `xsks_map` entry and passes the
//! rest to the kernel. It is what libxdp's `xsk_socket__create` attaches;
//! since the switch makes its sockets itself ([`super::socket`]), it
//! attaches the program itself, through libxdp's program API (so it joins
//! libxdp's dispatcher beside other programs, as before).
//!
//! One [`Program`] per interface, shared by the sockets of its queues
//! (each holds an `Arc`); the last one dropped detaches it. A program of
//! that name found on an interface that has none of ours is a leftover of
//! a vswitchd that did not exit cleanly (its sockets are gone, its map
//! empty): it is detached first, so that programs do not pile up. The
//! switch assumes it is the only AF_XDP user of the interfaces it attaches:
//! another libxdp application's program of that name would be removed too
//! (libxdp shares it between applications by name).
//!
//! Invariants: the registry lock is held while a program is attached or
//! detached, so that attaching and a concurrent last drop on another
//! thread never interleave (a worker dropping a deleted port's last queue
//! may wait for another port's attach); no `Arc<Program>` is dropped while
//! it is held.

use std::ffi::{CStr, c_void};
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

use libxdp_sys::{
    xdp_attach_mode, xdp_attach_mode_XDP_MODE_NATIVE, xdp_attach_mode_XDP_MODE_SKB, xdp_program,
};

const OBJECT: &CStr = c"xsk_def_xdp_prog.o";
const NAME: &CStr = c"xsk_def_prog";
const MAP: &CStr = c"xsks_map";

/// The redirect program attached to one interface.
pub(super) struct Program {
    prog: NonNull<xdp_program>,
    ifindex: u32,
    mode: xdp_attach_mode,
    map_fd: RawFd,
}

// SAFETY: the libxdp program object is only used under the registry lock
// (attach, detach) or through its map's fd (map updates are system calls).
unsafe impl Send for Program {}
// SAFETY: as for Send: shared references only reach the map's fd.
unsafe impl Sync for Program {}

/// An interface: the network namespace of the thread that attached it
/// (device and inode of its nsfs file) and its index there (indexes repeat
/// across namespaces: every pod's `eth0` may be 2).
type IfKey = ((u64, u64), u32);

/// The programs attached by this process, by interface.
static ATTACHED: Mutex<Vec<(IfKey, Weak<Program>)>> = Mutex::new(Vec::new());

/// The calling thread's network namespace.
fn netns() -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map_or((0, 0), |m| (m.dev(), m.ino()))
}

fn errno_text(rc: i32) -> String {
    std::io::Error::from_raw_os_error(rc.abs()).to_string()
}

/// The program on `ifindex` (in the calling thread's namespace), attached
/// in native or generic mode: the one already there if this process
/// attached it (in that mode), else a new one. The error carries a
/// negative errno and a message. The last holder must drop it in the same
/// namespace (libxdp detaches by index).
pub(super) fn attach(ifindex: u32, native: bool) -> Result<Arc<Program>, (i32, String)> {
    let key = (netns(), ifindex);
    let mode = if native {
        xdp_attach_mode_XDP_MODE_NATIVE
    } else {
        xdp_attach_mode_XDP_MODE_SKB
    };
    let mut list = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
    // A program whose last holder is dropping it (its drop waits for this
    // lock) is not a leftover: it detaches itself.
    let dying = list.iter().any(|(k, w)| *k == key && w.strong_count() == 0);
    list.retain(|(_, w)| w.strong_count() > 0);
    if let Some(p) = list
        .iter()
        .filter(|(k, _)| *k == key)
        .find_map(|(_, w)| w.upgrade())
    {
        // Unlocked before `p` may be dropped: it may be the last reference
        // by then, and its drop takes the lock.
        drop(list);
        if p.mode != mode {
            let was = if p.mode == xdp_attach_mode_XDP_MODE_NATIVE {
                "native"
            } else {
                "generic"
            };
            return Err((
                -libc::EEXIST,
                format!("the interface's program runs in {was} mode"),
            ));
        }
        return Ok(p);
    }
    for _ in 0..4 {
        if dying || !remove_leftover(ifindex) {
            break;
        }
    }
    // SAFETY: the file name is NUL-terminated; libxdp opens its embedded
    // object (or the file) and returns an error pointer on failure.
    let raw = unsafe {
        libxdp_sys::xdp_program__find_file(OBJECT.as_ptr(), std::ptr::null(), std::ptr::null_mut())
    };
    // SAFETY: libxdp_get_error reads an error pointer or a valid one.
    let err = unsafe { libxdp_sys::libxdp_get_error(raw as *const c_void) } as i32;
    let prog = match NonNull::new(raw) {
        Some(p) if err == 0 => p,
        _ => {
            return Err((
                err.min(-1),
                format!("loading the XDP program: {}", errno_text(err)),
            ));
        }
    };
    let close = |p: NonNull<xdp_program>| {
        // SAFETY: `p` came from xdp_program__find_file and is closed once.
        unsafe { libxdp_sys::xdp_program__close(p.as_ptr()) }
    };
    // SAFETY: `prog` is live; attaching loads it first.
    let rc = unsafe { libxdp_sys::xdp_program__attach(prog.as_ptr(), ifindex as i32, mode, 0) };
    if rc != 0 {
        close(prog);
        return Err((rc, errno_text(rc)));
    }
    // SAFETY: `prog` is live and loaded; the map belongs to its object.
    let map_fd = unsafe {
        let obj = libxdp_sys::xdp_program__bpf_obj(prog.as_ptr());
        let map = libxdp_sys::bpf_object__find_map_by_name(obj, MAP.as_ptr());
        if map.is_null() {
            -libc::ENOENT
        } else {
            libxdp_sys::bpf_map__fd(map)
        }
    };
    if map_fd < 0 {
        // SAFETY: detaches what was attached just above.
        unsafe { libxdp_sys::xdp_program__detach(prog.as_ptr(), ifindex as i32, mode, 0) };
        close(prog);
        return Err((
            map_fd,
            format!("the program's socket map: {}", errno_text(map_fd)),
        ));
    }
    let p = Arc::new(Program {
        prog,
        ifindex,
        mode,
        map_fd,
    });
    list.push((key, Arc::downgrade(&p)));
    Ok(p)
}

impl Program {
    /// Redirects queue `queue`'s frames to socket `fd`.
    pub(super) fn register(&self, queue: u16, fd: RawFd) -> Result<(), (i32, String)> {
        let key = u32::from(queue);
        // SAFETY: key and value are live u32/i32 of the map's sizes.
        let rc = unsafe {
            libxdp_sys::bpf_map_update_elem(
                self.map_fd,
                (&key as *const u32).cast(),
                (&fd as *const RawFd).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err((rc, format!("registering the socket: {}", errno_text(rc))));
        }
        Ok(())
    }

    /// Stops redirecting queue `queue` (its frames go to the kernel).
    pub(super) fn unregister(&self, queue: u16) {
        let key = u32::from(queue);
        // SAFETY: key is a live u32 of the map's key size. A missing entry
        // (the kernel removes a closed socket's) is not an error here.
        unsafe { libxdp_sys::bpf_map_delete_elem(self.map_fd, (&key as *const u32).cast()) };
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _list = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the program was attached by `attach` and is detached and
        // closed exactly once, here; libxdp detaches only this program
        // (another attached since is left alone).
        let rc = unsafe {
            libxdp_sys::xdp_program__detach(self.prog.as_ptr(), self.ifindex as i32, self.mode, 0)
        };
        // The interface is gone (and the program with it), or the program
        // was already removed as a leftover: nothing to do.
        if rc != 0 && rc != -libc::ENODEV && rc != -libc::ENOENT {
            tracing::warn!(
                ifindex = self.ifindex,
                "detaching the AF_XDP program: {}",
                errno_text(rc)
            );
        }
        // SAFETY: see above.
        unsafe { libxdp_sys::xdp_program__close(self.prog.as_ptr()) };
    }
}

/// Detaches one program named like ours from `ifindex` (see the module
/// comment); returns whether it did. Called with the registry locked, for
/// an interface that has none of ours.
fn remove_leftover(ifindex: u32) -> bool {
    // SAFETY: returns a multiprog handle (closed below), NULL or an error
    // pointer.
    let mp = unsafe { libxdp_sys::xdp_multiprog__get_from_ifindex(ifindex as i32) };
    // SAFETY: as for xdp_program__find_file above.
    if mp.is_null() || unsafe { libxdp_sys::libxdp_get_error(mp as *const c_void) } != 0 {
        return false;
    }
    let mut removed = false;
    // SAFETY: `mp` is a live handle; the programs it lists live as long as it.
    unsafe {
        let mode = libxdp_sys::xdp_multiprog__attach_mode(mp);
        let mut found = Vec::new();
        if libxdp_sys::xdp_multiprog__is_legacy(mp) {
            found.push(libxdp_sys::xdp_multiprog__main_prog(mp));
        } else {
            let mut p = libxdp_sys::xdp_multiprog__next_prog(std::ptr::null(), mp);
            while !p.is_null() {
                found.push(p);
                p = libxdp_sys::xdp_multiprog__next_prog(p, mp);
            }
        }
        // One at a time: a detach changes what `mp` describes.
        for p in found.into_iter().filter(|p| !p.is_null()) {
            let name = libxdp_sys::xdp_program__name(p);
            if !name.is_null() && CStr::from_ptr(name) == NAME {
                removed = libxdp_sys::xdp_program__detach(p, ifindex as i32, mode, 0) == 0;
                if removed {
                    tracing::warn!(ifindex, "removed an AF_XDP program left on the interface");
                }
                break;
            }
        }
        libxdp_sys::xdp_multiprog__close(mp);
    }
    removed
}
