//! `public/io/console.h`: the PV console ring page.

/// Bytes in the input ring (dom0 to guest).
pub const XENCONS_IN_SIZE: usize = 1024;
/// Bytes in the output ring (guest to dom0).
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `struct xencons_interface` (Xen 4.17: 3088 bytes, no `connection`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct XenconsInterface {
    /// Input ring.
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Output ring.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Written by the guest.
    pub in_cons: u32,
    /// Written by the backend.
    pub in_prod: u32,
    /// Written by the backend.
    pub out_cons: u32,
    /// Written by the guest.
    pub out_prod: u32,
}
