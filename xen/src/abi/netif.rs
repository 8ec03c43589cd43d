//! `public/io/netif.h`: the vif rings' request and response entries.

/// `NETTXF_csum_blank`: the L4 checksum holds only the pseudo-header sum.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the checksum was verified.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: another data slot follows.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: an extra-info slot follows.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// `NETRXF_data_validated` (note: swapped with TX).
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank`.
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// `NETRXF_gso_prefix` (deprecated).
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

/// `XEN_NETIF_EXTRA_TYPE_NONE`.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_EXTRA_TYPE_GSO`.
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL`.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// `XEN_NETIF_EXTRA_TYPE_HASH`.
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// `XEN_NETIF_EXTRA_TYPE_MAX` (Xen's header).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;
/// `XEN_NETIF_EXTRA_FLAG_MORE`.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_NONE`.
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `NETIF_RSP_DROPPED`.
pub const NETIF_RSP_DROPPED: i16 = -2;
/// `NETIF_RSP_ERROR`.
pub const NETIF_RSP_ERROR: i16 = -1;
/// `NETIF_RSP_OKAY`.
pub const NETIF_RSP_OKAY: i16 = 0;
/// `NETIF_RSP_NULL`: response to an extra-info slot.
pub const NETIF_RSP_NULL: i16 = 1;
/// `XEN_NETIF_MAX_TX_SIZE`.
pub const XEN_NETIF_MAX_TX_SIZE: usize = 0xFFFF;
/// `XEN_NETIF_NR_SLOTS_MIN`.
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;

/// `struct netif_tx_request` (12 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxRequest {
    /// Grant of the page holding this fragment.
    pub gref: u32,
    /// Offset in the page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: total packet size; later slots: this fragment's size.
    pub size: u16,
}

/// `struct netif_tx_response` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifTxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding.
    pub pad: u16,
    /// Grant of a writable page.
    pub gref: u32,
}

/// `struct netif_rx_response` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifRxResponse {
    /// The request's id.
    pub id: u16,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes in this slot (> 0) or `NETIF_RSP_*` (< 0).
    pub status: i16,
}

/// The GSO arm of `netif_extra_info`'s union.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifExtraInfoGso {
    /// MSS.
    pub size: u16,
    /// `XEN_NETIF_GSO_TYPE_*`.
    pub r#type: u8,
    /// Zero.
    pub pad: u8,
    /// Zero.
    pub features: u16,
}

/// `struct netif_extra_info` (8 bytes; a TX slot is 12). The union is kept
/// as its GSO arm; other arms are read by offset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The union (GSO arm).
    pub gso: NetifExtraInfoGso,
}
