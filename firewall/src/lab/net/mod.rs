//! The lab's non-firewall domains: sys-net with "the internet" behind it
//! ([`Internet`]) and client AppVMs with scripted traffic ([`AppVm`]), as
//! building blocks for the `lab` binary and the end-to-end tests.
//!
//! Each domain is a [`xen::sim`] domain running its vif driver (sys-net:
//! `netback`; an AppVM: `netfront`) under one smoltcp interface through
//! [`SmolDevice`], on a thread of its own started with `SimHost::spawn`.
//! The returned handle talks to the thread over a command channel and
//! reads shared counters; nothing in a handle blocks the domain.
//!
//! # Wiring a topology
//!
//! The toolstack (dom0, i.e. the test or the lab orchestrator) creates the
//! vifs with [`xen::sim::vif`] after the backend domain is running (libxl
//! waits for the backend to reach InitWait):
//!
//! ```text
//! let inet = Internet::start(&host, InternetConfig::default())?;     // sys-net: netback
//! // ... start the firewall domain (netfront uplink + netback for clients) ...
//! inet.attach(&host, fw_domid, 0, "10.138.0.5")?;                    // vif fw <- sys-net
//! let vm = AppVm::start(&host, AppVmConfig::qubes("work", [10, 137, 0, 10]))?; // netfront
//! attach(&host, vm.domid(), fw_domid, 0, "10.137.0.10")?;            // vif vm <- firewall
//! vm.wait_link_up(Duration::from_secs(10))?;
//! let results = vm.run(vec![Probe::fetch(addr, 80, 100_000)], Duration::from_secs(5))?;
//! ```
//!
//! sys-net restart: [`Internet::restart`] closes its vifs the way Linux
//! netback does on shutdown (backend state Closing, then Closed), destroys
//! the domain and removes the vif directories as libxl does for a dead
//! backend, starts a new sys-net and re-attaches every vif made through
//! [`Internet::attach`]; the firewall's netfront follows by itself.
//!
//! # Addresses
//!
//! smoltcp 0.12 is built with room for two interface addresses
//! (`IFACE_MAX_ADDR_COUNT`), so the internet interface holds only the
//! uplink gateway addresses and accepts the other hosts' traffic through
//! smoltcp's "any IP" mode (a default route via its own address); an
//! ingress filter in front of smoltcp drops packets to addresses that are
//! not configured, so a non-existent host is silent rather than answered.

pub mod appvm;
pub mod device;
pub mod dns;
pub mod http;
pub mod icmperr;
pub mod internet;
pub mod probe;
mod runtime;

#[cfg(test)]
mod tests;

pub use appvm::{AppVm, AppVmConfig, AppVmStats};
pub use device::{DeviceStats, SmolDevice};
pub use icmperr::IcmpError;
pub use internet::{Internet, InternetConfig, InternetStats};
pub use probe::{DnsExpect, Outcome, Probe, ProbeResult};

use std::time::Duration;

use xen::abi::DomId;
use xen::sim::vif::{self, VifError, VifSpec};
use xen::sim::SimHost;

/// Why a lab domain could not be started or driven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// The toolstack could not create the domain.
    CreateDomain(String),
    /// The domain's own setup (event channels, xenstore, grant table, pool,
    /// driver start) failed: what and why.
    Setup(&'static str, String),
    /// A xenstore operation of the domain's loop failed.
    Store(String),
    /// A vif operation of the toolstack failed.
    Vif(VifError),
    /// The domain's thread is gone (stopped or failed).
    Stopped,
    /// Waiting for this timed out.
    Timeout(&'static str),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::CreateDomain(e) => write!(f, "creating the domain: {e}"),
            NetError::Setup(what, e) => write!(f, "setting up {what}: {e}"),
            NetError::Store(e) => write!(f, "xenstore: {e}"),
            NetError::Vif(e) => write!(f, "vif: {e}"),
            NetError::Stopped => f.write_str("the domain has stopped"),
            NetError::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl std::error::Error for NetError {}

impl From<VifError> for NetError {
    fn from(e: VifError) -> Self {
        NetError::Vif(e)
    }
}

/// `xl network-attach` as the lab does it: vif `devid` of `frontend`
/// served by `backend`, with the frontend's address(es) `ip` written for
/// the backend (space separated, as Qubes' libvirt config does). The
/// backend's netback must be running: this waits for its InitWait.
pub fn attach(
    host: &SimHost,
    frontend: DomId,
    backend: DomId,
    devid: u32,
    ip: &str,
) -> Result<VifSpec, NetError> {
    let mut spec = VifSpec::new(frontend, backend, devid);
    spec.ip = ip.into();
    vif::attach_vif(host, &spec)?;
    Ok(spec)
}

/// How long a handle waits for its domain thread to answer a command
/// beyond the command's own time limit.
pub const COMMAND_SLACK: Duration = Duration::from_secs(10);
