//! What both endpoint domains' loops share: the domain's Xen services, the
//! clock in smoltcp's units, and the sleep between iterations.

use std::time::Duration;

use smoltcp::time::Instant as SmolInstant;
use xen::abi::EvtchnPort;
use xen::evtchn::EventChannels;
use xen::memory::pool::PagePool;
use xen::sim::SimDomain;
use xen::store::Xenstore;
use xen::Hypervisor;

use super::NetError;

/// The longest sleep of a loop: bounds how late a command from the handle
/// is seen (commands do not raise an event).
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(2);

/// A domain's event channels, xenstore connection and packet pool.
pub(crate) struct Services {
    pub(crate) dom: SimDomain,
    pub(crate) ev: EventChannels<SimDomain>,
    pub(crate) xs: Xenstore<SimDomain>,
}

impl Services {
    /// Connect to xenstore and make a pool of `pool_pages`.
    pub(crate) fn new(dom: SimDomain, pool_pages: usize) -> Result<(Services, PagePool), NetError> {
        let ev = EventChannels::new(dom.clone())
            .map_err(|e| NetError::Setup("event channels", e.to_string()))?;
        let xs = Xenstore::from_params(ev.clone())
            .map_err(|e| NetError::Setup("xenstore", e.to_string()))?;
        let pool = PagePool::new(&dom, pool_pages)
            .map_err(|e| NetError::Setup("packet pool", e.to_string()))?;
        Ok((Services { dom, ev, xs }, pool))
    }

    /// Now, in ns of the domain's clock.
    pub(crate) fn now(&self) -> u64 {
        self.dom.now_ns()
    }

    /// Sleep until one of `ports` (and xenstore's) fires, or `delay`
    /// (capped by [`MAX_SLEEP`]) passes.
    pub(crate) fn sleep(&self, ports: &mut Vec<EvtchnPort>, delay: Option<Duration>) {
        ports.push(self.xs.port());
        let d = delay.map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
        let deadline = self.now() + u64::try_from(d.as_nanos()).unwrap_or(0);
        let _ = self.ev.wait(ports, Some(deadline));
        ports.clear();
    }
}

/// A domain clock reading in smoltcp's time.
pub(crate) fn smol_now(ns: u64) -> SmolInstant {
    SmolInstant::from_micros((ns / 1000) as i64)
}

/// smoltcp's poll delay as a std duration.
pub(crate) fn smol_delay(d: Option<smoltcp::time::Duration>) -> Option<Duration> {
    d.map(|d| Duration::from_micros(d.total_micros()))
}
