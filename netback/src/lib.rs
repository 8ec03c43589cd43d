//! netback: the Xen vif backend the firewall runs for its client AppVMs
//! (whose Linux netfront is the frontend).
//!
//! It will watch `backend/vif` for new clients, drive each xenbus handshake
//! as a state machine, and move frames with grant copies: one grant-copy
//! hypercall and at most one notification per batch. Every ring slot a
//! client writes is validated; a client that breaks the protocol is
//! disconnected without disturbing the others.
//!
//! Status: placeholder for the netback milestone. So far it holds the
//! XenStore paths of a backend device ([`backend_dir`]).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use xen::abi::DomId;

/// The directory (relative to our domain's home) under which the toolstack
/// creates `<frontend domid>/<devid>` for every vif we serve. It may not
/// exist yet when we start; watching a missing path is fine.
pub const VIF_BACKENDS_DIR: &str = "backend/vif";

/// Our backend directory for vif `devid` of domain `frontend`, relative to
/// our domain's home: `backend/vif/<frontend>/<devid>`.
pub fn backend_dir(frontend: DomId, devid: u32) -> String {
    format!("{VIF_BACKENDS_DIR}/{frontend}/{devid}")
}

/// The absolute backend directory in domain `backend`:
/// `/local/domain/<backend>/backend/vif/<frontend>/<devid>` (the value a
/// frontend finds in its `backend` key).
pub fn absolute_backend_dir(backend: DomId, frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{backend}/{}", backend_dir(frontend, devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_backend_dir() {
        assert_eq!(backend_dir(5, 0), "backend/vif/5/0");
        assert_eq!(backend_dir(65, 3), "backend/vif/65/3");
    }

    #[test]
    fn absolute_backend_dir_names_both_domains() {
        assert_eq!(
            absolute_backend_dir(2, 5, 0),
            "/local/domain/2/backend/vif/5/0"
        );
    }
}
