//! The firewall: the packet engine and the platform glue that runs it,
//! plus the binaries built from them (the PVH unikernel, and `lab`, the
//! same code on a simulated Qubes host).
//!
//! - [`engine`]: the sans-IO packet engine (ARP, anti-spoofing,
//!   connection tracking and NAT, rules on new flows, ICMP, the `dsthost`
//!   resolver), rewriting packets in place so each forwarded packet is
//!   copied once (the grant copy);
//! - [`platform`]: the event loop, generic over the hypervisor, servicing
//!   QubesDB, the netfront uplink and the netback clients in batches;
//! - [`kernelopts`]: the kernel command line (qubes-mirage-firewall's
//!   options);
//! - [`qrexec`]: a minimal qrexec agent (dom0's session check and clock
//!   sync, every other service refused).
//!
//! Without the `std` feature the library is `no_std` + `alloc`; with it
//! (the simulated host, used by `lab` and the tests) it may use `std`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![deny(unsafe_code)]

/// The name the firewall is installed under in dom0: the kernel directory
/// `/var/lib/qubes/vm-kernels/mirage-firewall/`, as for
/// qubes-mirage-firewall, so switching is a matter of copying one file.
pub const NAME: &str = "mirage-firewall";

extern crate alloc;

pub mod engine;
pub mod kernelopts;
pub mod platform;
pub mod qrexec;

#[cfg(feature = "lab")]
pub mod lab;

#[cfg(feature = "hostfw")]
pub mod hostfw;
