//! The simulated Qubes host (`lab`): the firewall's code running on
//! [`xen::sim`], where anyone can watch it work without Xen.
//!
//! Until the drivers and the engine exist, the lab demonstrates the
//! foundation they stand on: two domains that find each other through
//! xenstore, share a ring page through a grant, signal each other through
//! an event channel, and exchange messages ([`pingpong`]).

pub mod pingpong;
