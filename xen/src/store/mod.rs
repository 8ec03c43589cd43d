//! Xenstore: the wire format and the guest client.
pub mod wire;
