//! The PV console: a writer for the output ring, and a `log` backend.
//!
//! The ring page (`struct xencons_interface`) is found through
//! `HVM_PARAM_CONSOLE_PFN` and signalled through `HVM_PARAM_CONSOLE_EVTCHN`.
//! Output goes into `out` at `out_prod & 2047`; dom0's console daemon
//! consumes it and advances `out_cons`. `\n` is written as `\r\n`.
//!
//! The writer never blocks indefinitely: when the ring is full it waits for
//! the backend up to a bounded time, then drops the rest and counts the
//! drop, so a stalled console cannot stall the firewall. There is one writer
//! per domain (the unikernel has one vCPU and takes no interrupts).

use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::abi::console::{XenconsInterface, XENCONS_OUT_SIZE};
use crate::abi::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use crate::abi::{Errno, EvtchnPort};
use crate::evtchn::EventChannels;
use crate::hypervisor::{HvResult, HypervisorExt};
use crate::memory::{mb, wmb, Gfn, SharedMem};
use crate::Platform;

const OUT: usize = offset_of!(XenconsInterface, out);
const OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
const OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

/// How long a full ring may hold up a write before bytes are dropped.
pub const FULL_RING_WAIT_NS: u64 = 50_000_000;

/// Writer for the PV console output ring.
pub struct Console<P: Platform + Clone> {
    ev: EventChannels<P>,
    ring: SharedMem,
    port: EvtchnPort,
    dropped: AtomicU64,
}

impl<P: Platform + Clone> Console<P> {
    /// Attach to the console ring named by the HVM params.
    pub fn from_params(ev: EventChannels<P>) -> HvResult<Self> {
        let p = ev.platform();
        let gfn = Gfn(p.get_param(HVM_PARAM_CONSOLE_PFN)?);
        let port = p.get_param(HVM_PARAM_CONSOLE_EVTCHN)? as EvtchnPort;
        let ring = p.page(gfn).ok_or(Errno::EFAULT)?;
        ev.unmask(port)?;
        Ok(Console {
            ev,
            ring,
            port,
            dropped: AtomicU64::new(0),
        })
    }

    /// Bytes dropped because the ring stayed full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Write `bytes`, translating `\n` to `\r\n`, then notify the backend.
    pub fn write(&self, bytes: &[u8]) {
        let mut deadline = None;
        let mut prod = self.ring.read_u32(OUT_PROD);
        let mut pending = 0u32;
        for &b in bytes {
            let seq: &[u8] = if b == b'\n' {
                b"\r\n"
            } else {
                core::slice::from_ref(&b)
            };
            for &c in seq {
                loop {
                    let cons = self.ring.load_u32(OUT_CONS, Ordering::Acquire);
                    // A backend reporting more consumed than produced is
                    // broken: treat the ring as empty from its view.
                    let used = prod.wrapping_sub(cons);
                    if (used as usize) < XENCONS_OUT_SIZE || used > XENCONS_OUT_SIZE as u32 {
                        break;
                    }
                    // Full: publish what we have and wait a bounded time.
                    self.publish(prod, &mut pending);
                    let now = self.ev.platform().now_ns();
                    let d = *deadline.get_or_insert(now + FULL_RING_WAIT_NS);
                    if now >= d || self.ev.wait(&[self.port], Some(d)).is_err() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    self.ev.clear_pending(self.port);
                }
                self.ring
                    .write_u8(OUT + (prod as usize & (XENCONS_OUT_SIZE - 1)), c);
                prod = prod.wrapping_add(1);
                pending += 1;
            }
        }
        self.publish(prod, &mut pending);
    }

    fn publish(&self, prod: u32, pending: &mut u32) {
        if *pending == 0 {
            return;
        }
        wmb();
        self.ring.store_u32(OUT_PROD, prod, Ordering::Release);
        mb();
        *pending = 0;
        // A failed notify only delays output until the next one.
        let _ = self.ev.send(self.port);
    }
}

impl<P: Platform + Clone> core::fmt::Write for &Console<P> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Console::write(self, s.as_bytes());
        Ok(())
    }
}

/// A `log` backend writing `LEVEL target: message` lines to a [`Console`].
///
/// The console assumes a single writer at a time; the unikernel has one vCPU
/// and takes no interrupts, so records never interleave.
pub struct ConsoleLogger<P: Platform + Clone> {
    console: Console<P>,
    /// Which records to print (all, until set): per-source levels from
    /// the kernel command line, set once they are parsed.
    filter: spin::Once<LogFilter>,
}

/// A record filter for [`ConsoleLogger::set_filter`].
pub type LogFilter = &'static (dyn Fn(&log::Metadata<'_>) -> bool + Send + Sync);

impl<P: Platform + Clone> ConsoleLogger<P> {
    /// Wrap a console.
    pub fn new(console: Console<P>) -> Self {
        ConsoleLogger {
            console,
            filter: spin::Once::new(),
        }
    }

    /// Print only the records `filter` accepts from now on (first call
    /// wins).
    pub fn set_filter(&self, filter: LogFilter) {
        self.filter.call_once(|| filter);
    }

    /// The console.
    pub fn console(&self) -> &Console<P> {
        &self.console
    }

    /// Format one record into the console.
    pub fn write_record(&self, record: &log::Record<'_>) {
        use core::fmt::Write;
        let mut w = &self.console;
        let _ = writeln!(
            w,
            "{:5} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }
}

impl<P: Platform + Clone + Send + Sync> log::Log for ConsoleLogger<P> {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.filter.get().is_none_or(|f| f(m))
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.write_record(record);
        }
    }
    fn flush(&self) {}
}
