//! What the backend offers its clients and how much it buffers.

/// Offload features. As a backend's configuration each switch means both
/// "advertise it to clients" (so they may send us such frames) and "use it
/// towards clients that advertise it" (so we may send them such frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Scatter-gather: frames of several slots (`feature-sg`).
    pub sg: bool,
    /// GSO for TCP over IPv4 (`feature-gso-tcpv4`).
    pub gso_tcpv4: bool,
    /// GSO for TCP over IPv6 (`feature-gso-tcpv6`).
    pub gso_tcpv6: bool,
    /// Hand clients frames with partial checksums (`NETRXF_csum_blank`)
    /// when they accept them. Partial IPv4 checksums *from* clients are
    /// always accepted (Linux netfront cannot turn them off).
    pub csum_offload: bool,
    /// IPv6 partial checksums both ways
    /// (`feature-ipv6-csum-offload`).
    pub ipv6_csum_offload: bool,
}

impl Features {
    /// Everything on (what Linux netback offers).
    pub const ALL: Features = Features {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        csum_offload: true,
        ipv6_csum_offload: true,
    };

    /// Everything off: single-slot frames with complete checksums.
    pub const NONE: Features = Features {
        sg: false,
        gso_tcpv4: false,
        gso_tcpv6: false,
        csum_offload: false,
        ipv6_csum_offload: false,
    };
}

impl Default for Features {
    fn default() -> Self {
        Features::ALL
    }
}

/// Tunables of a [`Netback`](crate::Netback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetbackConfig {
    /// Offloads offered.
    pub features: Features,
    /// Frames queued per client for its rx ring (us → client) before
    /// [`Netback::send`](crate::Netback::send) refuses more.
    pub rx_queue: usize,
    /// Grant-copy operations one `GNTTABOP_copy` hypercall of a flush
    /// carries at most (the pre-sized batch; a flush needing more issues
    /// several).
    pub copy_batch: usize,
    /// Pool pages `poll` leaves free: it stops taking frames from a client
    /// (leaving them in the ring) rather than eat into them.
    pub pool_reserve: usize,
    /// Frames queued for a client that posts no receive buffers for this
    /// long are dropped (Linux: 10 s).
    pub rx_drain_timeout_ns: u64,
    /// More event-channel wakeups that find no work than this within
    /// [`NetbackConfig::storm_window_ns`] disconnect the client.
    pub storm_wakeups: u32,
    /// The event storm window.
    pub storm_window_ns: u64,
    /// After the toolstack sets `online = 0`, how long to wait for a
    /// connected frontend to close before removing the backend directory
    /// anyway (libxl gives up after 10 s).
    pub close_grace_ns: u64,
}

impl Default for NetbackConfig {
    fn default() -> Self {
        NetbackConfig {
            features: Features::ALL,
            rx_queue: 256,
            copy_batch: 1024,
            pool_reserve: 32,
            rx_drain_timeout_ns: 10_000_000_000,
            storm_wakeups: 10_000,
            storm_window_ns: 1_000_000_000,
            close_grace_ns: 3_000_000_000,
        }
    }
}
