//! Qubes firewall rules, exactly as Qubes means them: the rule lines dom0
//! writes to the firewall's QubesDB (`/qubes-firewall/<ip>/NNNN`, plus
//! `policy`), parsed into typed rules, grouped into a per-client
//! [`RuleSet`] that decides on new flows.
//!
//! The reference semantics are the Linux `qubes-firewall` agent's
//! (qubes-core-agent-linux, `qubesagent/firewall.py`, nftables worker),
//! checked against dom0's writer (qubes-core-admin `qubes/firewall.py`) and
//! the Qubes docs (`vm-interface`, "Firewall rules in 4.x"):
//!
//! * rules sorted by number, gaps allowed; `policy` applied last;
//! * every field dom0 writes: `action`, `dst4`, `dst6`, `dsthost`, `proto`,
//!   `specialtarget=dns`, `dstports`, `icmptype`; IPv4 and IPv6 client sets;
//! * `specialtarget=dns` combined with `proto`, `dstports` and a
//!   destination as the Linux agent does;
//! * `drop` means reject with ICMP administratively prohibited
//!   ([`Verdict::Reject`]);
//! * any malformed or unknown field fails the whole client closed, with a
//!   [`RuleError`] naming the client, the key and the field.
//!
//! Where this crate differs from Linux it is stricter, never more
//! permissive (see [`Rule`] and [`RuleSet`] for the details: field
//! combinations, `dsthost` resolution).
//!
//! This crate is pure `no_std` + `alloc`: it knows nothing of Xen, QubesDB
//! transport, packets in memory or DNS; the firewall feeds it strings,
//! flows and resolved addresses.
//!
//! ```
//! use core::net::IpAddr;
//! use rules::{Context, Flow, RuleSet, Transport, Verdict};
//!
//! let set = RuleSet::from_entries(
//!     "10.137.0.5",
//!     &[
//!         ("policy", "drop"),
//!         ("0000", "action=accept dst4=192.168.0.0/24 proto=tcp dstports=443-443"),
//!         ("0002", "action=accept specialtarget=dns"),
//!     ],
//! )
//! .unwrap();
//! let dns: [IpAddr; 1] = ["10.139.1.1".parse().unwrap()];
//! let ctx = Context::new(&dns);
//! let client = "10.137.0.5".parse().unwrap();
//! let https = Flow::new(client, "192.168.0.7".parse().unwrap(), Transport::Tcp { dst_port: 443 });
//! let query = Flow::new(client, dns[0], Transport::Udp { dst_port: 53 });
//! let other = Flow::new(client, "1.1.1.1".parse().unwrap(), Transport::Udp { dst_port: 53 });
//! assert_eq!(set.decide(&https, &ctx), Verdict::Accept);
//! assert_eq!(set.decide(&query, &ctx), Verdict::Accept);
//! assert_eq!(set.decide(&other, &ctx), Verdict::Reject);
//! ```
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

mod action;
mod error;
mod field;
mod flow;
mod host;
mod key;
mod rule;
mod ruleset;
mod shown;

pub use action::{Action, ParseActionError};
pub use error::{RuleError, RuleErrorKind};
pub use field::Field;
pub use flow::{Context, Decision, Flow, Reason, Transport, Verdict};
pub use host::{HostName, HostNameError, HostState};
pub use ipnet::{Ipv4Net, Ipv6Net};
pub use key::RuleKey;
pub use rule::{Destination, LineError, PortRange, Proto, Rule, SpecialTarget};
pub use ruleset::RuleSet;
pub use shown::Shown;
