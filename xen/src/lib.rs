//! Xen guest interfaces for a PVH unikernel, and a simulated Xen to test
//! them on.
//!
//! Layers, bottom up:
//! - [`abi`]: `#[repr(C)]` mirrors of Xen's public structs and constants,
//!   checked against Debian's `libxen-dev` headers by a layout test.
//! - [`hypervisor`]: the [`Hypervisor`](hypervisor::Hypervisor) trait, one
//!   method per hypercall op; [`memory`]: frame numbers, page allocation and
//!   [`SharedMem`](memory::SharedMem), the only way to touch memory a peer
//!   can write.
//! - [`gnttab`], [`evtchn`], [`ring`], [`store`], [`xenbus`], [`console`]:
//!   the guest-side services every driver uses, written once against the
//!   traits.
//! - [`sim`] (feature `sim`): N domains in one process, each with its own
//!   memory, grant table, event channels and thread, checked as Xen checks
//!   them, with a real xenstore server and console backend in dom0.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod abi;
pub mod console;
pub mod evtchn;
pub mod frame;
pub mod gnttab;
#[cfg(feature = "pvh")]
pub mod hypercall;
pub mod hypervisor;
pub mod memory;
#[cfg(feature = "pvh")]
pub mod pvh;
pub mod ring;
pub mod store;
pub mod xenbus;

#[cfg(feature = "sim")]
pub mod sim;

pub use hypervisor::{Hypervisor, HypervisorExt};
pub use memory::{GuestMemory, SharedMem};

/// What the guest-side services need from their platform: hypercalls and
/// guest memory. Implemented by the unikernel backend and by
/// [`sim::SimDomain`].
pub trait Platform: Hypervisor + GuestMemory {}
impl<T: Hypervisor + GuestMemory + ?Sized> Platform for T {}
