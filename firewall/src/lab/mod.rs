//! The simulated Qubes host (`lab`): the firewall's code running on
//! [`xen::sim`], where anyone can watch it work without Xen.
//!
//! - [`fwvm`]: the firewall VM (the unikernel's event loop in a simulated
//!   domain);
//! - [`net`]: the other domains: sys-net with a simulated internet of
//!   smoltcp hosts, and client AppVMs with smoltcp stacks and probes;
//! - [`pingpong`]: the two-domain ring exchange the drivers stand on.

pub mod fwvm;
pub mod net;
pub mod pingpong;
pub mod topology;
