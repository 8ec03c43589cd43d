//! Counters.

/// Why transmitted frames were dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDrops {
    /// The backend answered `NETIF_RSP_ERROR` (or an unknown status).
    pub backend_error: u64,
    /// The backend answered `NETIF_RSP_DROPPED`.
    pub backend_dropped: u64,
    /// A partial checksum could not be completed (not TCP/UDP, malformed),
    /// or a GSO frame could not be segmented.
    pub malformed: u64,
    /// Too large for a backend without scatter-gather, or more slots than
    /// the ring has.
    pub too_big: u64,
    /// No pool page (linearising or software segmentation) or no grant
    /// reference.
    pub no_resources: u64,
    /// Empty frames.
    pub empty: u64,
    /// Frames still in flight when the connection went down.
    pub disconnected: u64,
}

/// Why received packets were dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDrops {
    /// The backend marked the packet with a negative status.
    pub backend_status: u64,
    /// 19 data slots (Linux's allowance; more than a frame holds).
    pub too_many_slots: u64,
    /// Zero bytes.
    pub empty: u64,
    /// A buffer page could not be revoked (the backend still holds it).
    pub page_busy: u64,
}

/// Netfront counters (cumulative over connections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames placed in the tx ring.
    pub tx_frames: u64,
    /// Bytes placed in the tx ring.
    pub tx_bytes: u64,
    /// Frames delivered from the rx ring.
    pub rx_frames: u64,
    /// Bytes delivered from the rx ring.
    pub rx_bytes: u64,
    /// Transmit drops by reason.
    pub tx_dropped: TxDrops,
    /// Receive drops by reason.
    pub rx_dropped: RxDrops,
    /// Partial checksums completed in software before transmitting.
    pub tx_csum_completed: u64,
    /// GSO frames segmented in software (backend without GSO/SG).
    pub tx_segmented: u64,
    /// Multi-page frames copied into one page (backend without SG).
    pub tx_linearized: u64,
    /// Frames whose first segment was shorter than an Ethernet header,
    /// given a copied head (Linux netback drops such packets).
    pub tx_head_pulled: u64,
    /// Notifications sent to the backend.
    pub notifications_sent: u64,
    /// Polls that found our port signalled.
    pub wakeups: u64,
    /// Of those, how many found no work.
    pub idle_wakeups: u64,
    /// Connections brought up.
    pub connects: u64,
    /// Connections torn down (for any reason).
    pub disconnects: u64,
    /// Protocol violations by the backend.
    pub violations: u64,
    /// Pages in quarantine now (a grant the backend still holds).
    pub quarantined: u64,
    /// Pages ever put in quarantine.
    pub quarantined_total: u64,
    /// Pages released from quarantine.
    pub quarantine_released: u64,
    /// Pages given up for good (quarantine overflow; never expected).
    pub abandoned: u64,
}
