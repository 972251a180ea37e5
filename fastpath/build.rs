//! Compiles the uplink's XDP program (`bpf/uplink.bpf.c`) into
//! `$OUT_DIR/uplink.bpf.o`, which `src/port/uplink.rs` embeds with
//! `include_bytes!`.
//!
//! The object must carry BTF (`-g`): its maps are BTF-defined, and libbpf
//! cannot create them without it. Headers come from the system:
//! `<linux/*.h>` from linux-libc-dev and `<bpf/*.h>` from libbpf-dev.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = "bpf/uplink.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out_dir.join("uplink.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    let mut cmd = Command::new(&clang);
    cmd.args(["-O2", "-g", "-Wall", "-target", "bpf"]);
    // With `-target bpf` clang does not search the host's multiarch include
    // directory, where Debian keeps <asm/types.h> (included by <linux/types.h>).
    if let Some(dir) = multiarch_include() {
        cmd.arg(format!("-I{}", dir.display()));
    }
    cmd.arg("-c").arg(SOURCE).arg("-o").arg(&object);

    match cmd.output() {
        Ok(out) if out.status.success() => {
            // Warnings are worth seeing, but must not fail the build.
            let stderr = String::from_utf8_lossy(&out.stderr);
            for line in stderr.lines().filter(|l| !l.is_empty()) {
                println!("cargo:warning={line}");
            }
        }
        Ok(out) => panic!(
            "compiling {SOURCE} with `{clang}` failed ({}):\n{}\n\
             Install the build dependencies (clang, libbpf-dev, linux-libc-dev) \
             with scripts/deps.sh.",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{clang}` to compile {SOURCE}: {e}. \
             Install the build dependencies (clang, libbpf-dev, linux-libc-dev) \
             with scripts/deps.sh, or name a compiler in $CLANG."
        ),
    }
}

/// `/usr/include/<triple>` of the build host, if it exists: the triple
/// `gcc -dumpmachine` reports, else the Debian triple of the target
/// architecture.
fn multiarch_include() -> Option<PathBuf> {
    let from_gcc = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let from_target = env::var("CARGO_CFG_TARGET_ARCH")
        .ok()
        .map(|arch| format!("{arch}-linux-gnu"));
    [from_gcc, from_target]
        .into_iter()
        .flatten()
        .filter(|t| !t.is_empty())
        .map(|t| Path::new("/usr/include").join(t))
        .find(|dir| dir.join("asm/types.h").exists())
}
