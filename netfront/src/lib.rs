//! netfront: the Xen vif frontend the firewall uses for its uplink to
//! sys-net (whose Linux netback is the backend).
//!
//! It will drive the xenbus handshake as a state machine, own the tx/rx
//! rings and their page-pool buffers, handle scatter-gather, checksum
//! offload flags and GSO metadata, and offer a batch API (pull received
//! frames, push frames to send) with at most one notification per batch.
//! A backend that breaks the protocol is disconnected and logged.
//!
//! Status: placeholder for the netfront milestone. So far it holds the
//! XenStore paths of a frontend device ([`device_dir`]).
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use xen::abi::DomId;

/// The directory (relative to our domain's home) under which the toolstack
/// creates one entry per vif; watch it rather than one device, because a
/// netvm change re-attaches the vif under a new device id.
pub const VIF_DEVICES_DIR: &str = "device/vif";

/// Our frontend directory for vif `devid`, relative to our domain's home:
/// `device/vif/<devid>`.
pub fn device_dir(devid: u32) -> String {
    format!("{VIF_DEVICES_DIR}/{devid}")
}

/// The absolute frontend directory of vif `devid` in domain `frontend`:
/// `/local/domain/<frontend>/device/vif/<devid>` (the value a backend finds
/// in its `frontend` key).
pub fn absolute_device_dir(frontend: DomId, devid: u32) -> String {
    format!("/local/domain/{frontend}/{}", device_dir(devid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_device_dir() {
        assert_eq!(device_dir(0), "device/vif/0");
        assert_eq!(device_dir(12), "device/vif/12");
    }

    #[test]
    fn absolute_device_dir_names_the_domain() {
        assert_eq!(absolute_device_dir(7, 0), "/local/domain/7/device/vif/0");
    }
}
