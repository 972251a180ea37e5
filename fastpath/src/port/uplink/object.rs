//! The embedded BPF object and its loading: the compiled program's bytes
//! and the libbpf object opened and loaded from them.
//!
//! [`Object`] owns everything libbpf allocated for the program and its
//! maps; it is closed exactly once, when dropped, which closes the
//! program's and maps' fds. Every raw libbpf pointer used in this
//! directory belongs to a live `Object`. An attached program outlives the
//! object: the interface holds its own reference until it is detached.

use std::ffi::CStr;
use std::io;
use std::ptr::NonNull;

use libxdp_sys::{bpf_object, bpf_object_open_opts};

use super::UplinkError;

/// The compiled program. libelf reads the ELF headers in place, so the
/// bytes are kept 8-byte aligned.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);
static OBJECT: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/uplink.bpf.o")));

pub(super) const PROGRAM: &CStr = c"uplink";

/// The libbpf object; closing it closes the program's and maps' fds (an
/// attached program stays attached: the interface holds its own reference).
pub(super) struct Object(pub(super) NonNull<bpf_object>);

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful bpf_object__open_mem
        // and is closed exactly once, here.
        unsafe { libxdp_sys::bpf_object__close(self.0.as_ptr()) };
    }
}

pub(super) fn errno(rc: i32) -> io::Error {
    io::Error::from_raw_os_error(rc.abs())
}

/// Opens and loads the embedded object (programs verified, maps created).
pub(super) fn load() -> Result<Object, UplinkError> {
    // SAFETY: the options struct is plain data; all-zero means "defaults".
    // (Its last field ends the struct: there is no trailing padding for
    // libbpf's check of unknown bytes to trip on, unlike in `detach`.)
    let mut opts: bpf_object_open_opts = unsafe { std::mem::zeroed() };
    opts.sz = size_of::<bpf_object_open_opts>();
    opts.object_name = c"vswitch_uplink".as_ptr();
    // SAFETY: OBJECT is 'static; libbpf copies the name and reads the bytes
    // only during open and load.
    let obj = unsafe {
        libxdp_sys::bpf_object__open_mem(OBJECT.0.as_ptr().cast(), OBJECT.0.len(), &opts)
    };
    let obj = NonNull::new(obj)
        .map(Object)
        .ok_or_else(|| UplinkError::Open(io::Error::last_os_error()))?;
    // SAFETY: `obj` was just opened and is loaded once.
    let rc = unsafe { libxdp_sys::bpf_object__load(obj.0.as_ptr()) };
    if rc != 0 {
        return Err(UplinkError::Load(errno(rc)));
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_is_embedded() {
        assert_eq!(&OBJECT.0[..4], b"\x7fELF");
    }
}
