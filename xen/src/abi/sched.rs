//! `public/sched.h`: scheduler ops.

/// `SCHEDOP_yield`.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`.
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`.
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_shutdown_code`.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;

/// `SHUTDOWN_poweroff`.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`.
pub const SHUTDOWN_WATCHDOG: u32 = 4;

/// Most ports one `SCHEDOP_poll` may name.
pub const SCHED_POLL_MAX_PORTS: usize = 128;

/// `struct sched_shutdown` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedShutdown {
    /// `SHUTDOWN_*`.
    pub reason: u32,
}

/// `struct sched_poll` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest pointer to an array of `evtchn_port_t`.
    pub ports: u64,
    /// Number of ports (at most 128).
    pub nr_ports: u32,
    /// Absolute Xen system time in ns; 0 = no timeout.
    pub timeout: u64,
}
