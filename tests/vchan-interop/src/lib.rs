//! Interop between Debian's real C libxenvchan and this project's `vchan`,
//! on the simulated Xen.
//!
//! `build.rs` links `libxenvchan.a` statically; every Xen library function
//! it calls (`xenevtchn_*`, `xengnttab_*`, `xengntshr_*`, `xs_*`) comes
//! from `xen::memory::libxen_shim`, which runs it as a simulated domain:
//! the C code reads and writes the domain's real (simulated) memory,
//! signals through its event channels and publishes through its xenstore
//! ring. [`session::run`] connects two fresh domains, each end run by
//! either implementation, moves data both ways at once in random chunk
//! sizes, checks every byte, and closes from the chosen side.
//!
//! All unsafe code is in [`ffi`], the FFI boundary.
#![deny(unsafe_code)]

pub mod crafted;
pub mod ffi;
pub mod pattern;
pub mod peer;
pub mod probe;
pub mod session;

pub use session::{run, End, Impl, Outcome, Session};
