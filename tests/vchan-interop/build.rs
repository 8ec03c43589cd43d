//! Link Debian's `libxenvchan.a` (package `libxen-dev`) into this crate.
//!
//! The archive is copied into `OUT_DIR` with one symbol renamed:
//! `libxenvchan_close` unmaps ring buffers with a plain `munmap`, which on
//! the simulator would punch a hole into a simulated domain's reserved
//! address space, so its reference to `munmap` is pointed at
//! `libxen_shim_munmap` (in `xen::memory::libxen_shim`), which releases the
//! grant mapping as Linux's gntdev/gntalloc do. Every other undefined symbol
//! of the archive (`xenevtchn_*`, `xengnttab_*`, `xengntshr_*`, `xs_*`)
//! is defined by that shim; libc provides the rest.
//!
//! Set `LIBXENVCHAN_A` to use another copy of the archive.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_ARCHIVE: &str = "/usr/lib/x86_64-linux-gnu/libxenvchan.a";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBXENVCHAN_A");
    let src = env::var("LIBXENVCHAN_A").unwrap_or_else(|_| DEFAULT_ARCHIVE.to_string());
    println!("cargo:rerun-if-changed={src}");
    if !Path::new(&src).is_file() {
        panic!(
            "{src} not found: the vchan interop test links Debian's libxenvchan; \
             install it with `apt-get install libxen-dev` (or set LIBXENVCHAN_A)"
        );
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let dst = out.join("libxenvchan_sim.a");
    let objcopy = env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".to_string());
    let status = Command::new(&objcopy)
        .arg("--redefine-sym")
        .arg("munmap=libxen_shim_munmap")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap_or_else(|e| panic!("running {objcopy} (binutils): {e}"));
    assert!(status.success(), "{objcopy} failed on {src}: {status}");
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=xenvchan_sim");
}
