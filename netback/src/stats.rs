//! Per-vif counters. "tx" and "rx" are named from the client's side, as in
//! netif.h: tx = client → us, rx = us → client.

/// Frames dropped on their way to a client, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDrops {
    /// Larger than the client can take (no `feature-sg`, not GSO).
    pub too_big: u64,
    /// A partial checksum the client cannot take could not be completed.
    pub checksum: u64,
    /// A GSO frame that could not be segmented.
    pub segmentation: u64,
    /// A grant copy into the client's buffer failed.
    pub copy_failed: u64,
    /// Queued longer than the drain timeout without receive buffers.
    pub drain_timeout: u64,
    /// Still queued when the vif disconnected.
    pub disconnected: u64,
    /// Frames of no bytes.
    pub empty: u64,
}

impl RxDrops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.too_big
            + self.checksum
            + self.segmentation
            + self.copy_failed
            + self.drain_timeout
            + self.disconnected
            + self.empty
    }
}

/// Counters of one vif.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received from the client and handed to the caller.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Multicast-control requests from the client (answered, ignored).
    pub tx_control: u64,
    /// Polls that stopped early because the caller's queue was full or
    /// the pool low (requests left in the ring).
    pub tx_backpressure: u64,
    /// Frames (or software segments) delivered to the client.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// GSO frames delivered as software segments.
    pub rx_segmented: u64,
    /// Partial checksums completed in software for the client.
    pub rx_csum_completed: u64,
    /// [`Netback::send`](crate::Netback::send) calls refused because the
    /// queue was full.
    pub rx_queue_full: u64,
    /// Frames dropped on the way to the client.
    pub rx_drops: RxDrops,
    /// `GNTTABOP_copy` hypercalls carrying this vif's copies (a flush's
    /// hypercall is counted for every vif it served).
    pub grant_copy_calls: u64,
    /// Grant-copy operations for this vif (both directions).
    pub copy_ops: u64,
    /// Event-channel notifications sent to the client.
    pub notifications: u64,
    /// Event-channel wakeups that found no work.
    pub idle_wakeups: u64,
}
