//! The firewall: the packet engine and the platform glue that runs it,
//! plus the binaries built from them (the PVH unikernel, and `lab`, the
//! same code on a simulated Qubes host).
//!
//! The engine will be sans-IO: frames in (per interface), actions out. It
//! will do ARP, anti-spoofing, connection tracking and NAT, DNS redirection
//! of the Qubes virtual DNS addresses, and rule checks on new flows only,
//! rewriting packets in place so each forwarded packet is copied once (the
//! grant copy). The glue will be one event loop, generic over the
//! hypervisor, servicing netfront, netback and QubesDB in batches.
//!
//! Status: placeholder for the engine and unikernel milestones. Without the
//! `sim` feature the library is `no_std`; with it (simulated Xen, used by
//! `lab` and the tests) it may use `std`.
#![cfg_attr(not(any(test, feature = "sim")), no_std)]
#![deny(unsafe_code)]

/// The name the firewall is installed under in dom0: the kernel directory
/// `/var/lib/qubes/vm-kernels/mirage-firewall/`, as for
/// qubes-mirage-firewall, so switching is a matter of copying one file.
pub const NAME: &str = "mirage-firewall";

extern crate alloc;

pub mod engine;

#[cfg(feature = "lab")]
pub mod lab;
