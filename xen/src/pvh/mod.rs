//! The real backend: this crate's services running as a Xen PVH guest.
//!
//! [`Pvh`] implements [`Hypervisor`] through the hypercall page and
//! [`GuestMemory`] over an identity-mapped address space: a GFN is its
//! address >> 12. RAM pages come from the heap (page-aligned allocations);
//! hole frames, where Xen places foreign grant mappings, are the 4..5 GiB
//! window that the page tables map but no RAM backs.
//!
//! The entry code, the Rust start, the W^X page tables ([`paging`]), the
//! exception handlers, the self-tests ([`selftest`]) and the runtime (panic
//! handler, allocator, `mem*`) are compiled only into the freestanding
//! kernel, never into a host build (`std`) or a test. This module,
//! [`crate::hypercall`] and [`crate::memory`] are the only places in the
//! crate with `unsafe`.

#![allow(unsafe_code)]

#[cfg(not(any(test, feature = "std")))]
mod boot;
pub mod clock;
pub mod cpu;
#[cfg(not(any(test, feature = "std")))]
pub mod paging;
#[cfg(not(any(test, feature = "std")))]
mod rt;
#[cfg(not(any(test, feature = "std")))]
pub mod selftest;
#[cfg(not(any(test, feature = "std")))]
mod start;
#[cfg(not(any(test, feature = "std")))]
mod trap;

#[cfg(not(any(test, feature = "std")))]
pub use start::BootInfo;

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::abi::event_channel::*;
use crate::abi::grant_table::*;
use crate::abi::hvm::*;
use crate::abi::hypercall as nr;
use crate::abi::memory::*;
use crate::abi::sched::*;
use crate::abi::vcpu::*;
use crate::abi::{console_io, Errno, PAGE_SIZE};
use crate::hypercall::{call2, call3};
use crate::hypervisor::*;
use crate::memory::bitmap::PageBitmap;
use crate::memory::{Gfn, GuestMemory, SharedMem};

/// First GFN of the hole window (4 GiB).
pub const HOLE_FIRST: u64 = 0x10_0000;
/// Frames in the hole window (1 GiB).
pub const HOLE_PAGES: usize = 0x4_0000;
/// GFNs below this are mapped by the page tables (0..5 GiB).
pub const MAPPED_GFN_LIMIT: u64 = HOLE_FIRST + HOLE_PAGES as u64;

static SHARED_INFO_GFN: AtomicU64 = AtomicU64::new(0);
static HOLE: spin::Mutex<Option<PageBitmap>> = spin::Mutex::new(None);

/// A static that the Rust start writes once, on the only vCPU with
/// interrupts off, before handing it to the CPU (page tables, GDT, IDT,
/// TSS); after that nothing but the CPU reads it. Statics with interior
/// mutability are always placed in writable memory.
#[cfg_attr(any(test, feature = "std"), allow(dead_code))]
struct BootCell<T>(core::cell::UnsafeCell<T>);

// SAFETY: see the type: one writer, before any other user exists.
unsafe impl<T> Sync for BootCell<T> {}

#[cfg_attr(any(test, feature = "std"), allow(dead_code))]
impl<T> BootCell<T> {
    const fn new(t: T) -> Self {
        BootCell(core::cell::UnsafeCell::new(t))
    }

    fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

/// Declare the kernel's main: `xen::pvh_main!(main)` with
/// `fn main(boot: &'static xen::pvh::BootInfo) -> !`.
#[macro_export]
macro_rules! pvh_main {
    ($main:path) => {
        /// The kernel entry called by `xen::pvh` once the runtime is up.
        #[unsafe(no_mangle)]
        fn pvh_main(boot: &'static $crate::pvh::BootInfo) -> ! {
            $main(boot)
        }
    };
}

/// Early output on the debug port 0xe9 (QEMU `-debugcon`, Xen's guest log).
pub mod early {
    /// A `core::fmt::Write` to port 0xe9.
    pub struct Port;
    impl core::fmt::Write for Port {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                super::cpu::outb(0xe9, b);
            }
            Ok(())
        }
    }
}

#[cfg_attr(any(test, feature = "std"), allow(dead_code))]
fn init_hole() {
    *HOLE.lock() = Some(PageBitmap::new(HOLE_PAGES));
}

#[cfg_attr(any(test, feature = "std"), allow(dead_code))]
fn hypercalls_ready() -> bool {
    crate::hypercall::page_first_byte() != 0xc3
}

/// The PVH platform: zero-sized, every handle is the same machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pvh;

fn ret(r: i64) -> HvResult {
    Errno::from_ret(r).map(|_| ())
}

fn ptr<T>(t: &T) -> u64 {
    t as *const T as u64
}

impl Hypervisor for Pvh {
    fn memory_op(&self, op: MemoryOp<'_>) -> HvResult {
        // SAFETY (all hypercalls below): the page is installed before the
        // kernel's main runs; every pointer is to a live ABI struct (or
        // slice) borrowed for the call, identity-mapped, so Xen reads and
        // writes exactly that struct.
        let r = unsafe {
            match op {
                MemoryOp::AddToPhysmap(a) => {
                    call2(nr::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP as u64, ptr(a))
                }
                MemoryOp::RemoveFromPhysmap(a) => {
                    call2(nr::MEMORY_OP, XENMEM_REMOVE_FROM_PHYSMAP as u64, ptr(a))
                }
            }
        };
        ret(r)
    }

    fn grant_table_op(&self, op: GnttabOp<'_>) -> HvResult {
        let (cmd, p, n) = match op {
            GnttabOp::MapGrantRef(s) => (GNTTABOP_MAP_GRANT_REF, s.as_mut_ptr() as u64, s.len()),
            GnttabOp::UnmapGrantRef(s) => {
                (GNTTABOP_UNMAP_GRANT_REF, s.as_mut_ptr() as u64, s.len())
            }
            GnttabOp::Copy(s) => (GNTTABOP_COPY, s.as_mut_ptr() as u64, s.len()),
            GnttabOp::QuerySize(q) => (GNTTABOP_QUERY_SIZE, q as *mut _ as u64, 1),
        };
        // SAFETY: see memory_op; `n` elements live at `p`.
        ret(unsafe { call3(nr::GRANT_TABLE_OP, cmd as u64, p, n as u64) })
    }

    fn event_channel_op(&self, op: EvtchnOp<'_>) -> HvResult {
        let (cmd, p) = match op {
            EvtchnOp::AllocUnbound(a) => (EVTCHNOP_ALLOC_UNBOUND, a as *mut _ as u64),
            EvtchnOp::BindInterdomain(a) => (EVTCHNOP_BIND_INTERDOMAIN, a as *mut _ as u64),
            EvtchnOp::BindVirq(a) => (EVTCHNOP_BIND_VIRQ, a as *mut _ as u64),
            EvtchnOp::Close(a) => (EVTCHNOP_CLOSE, ptr(a)),
            EvtchnOp::Send(a) => (EVTCHNOP_SEND, ptr(a)),
            EvtchnOp::Status(a) => (EVTCHNOP_STATUS, a as *mut _ as u64),
            EvtchnOp::Unmask(a) => (EVTCHNOP_UNMASK, ptr(a)),
        };
        // SAFETY: see memory_op.
        ret(unsafe { call2(nr::EVENT_CHANNEL_OP, cmd as u64, p) })
    }

    fn sched_op(&self, op: SchedOp<'_>) -> HvResult {
        let r = match op {
            // SAFETY: no argument.
            SchedOp::Yield => unsafe { call2(nr::SCHED_OP, SCHEDOP_YIELD as u64, 0) },
            // SAFETY: no argument.
            SchedOp::Block => unsafe { call2(nr::SCHED_OP, SCHEDOP_BLOCK as u64, 0) },
            // SAFETY: see memory_op.
            SchedOp::Shutdown(s) => unsafe { call2(nr::SCHED_OP, SCHEDOP_SHUTDOWN as u64, ptr(s)) },
            SchedOp::Poll { ports, timeout } => {
                let p = SchedPoll {
                    ports: ports.as_ptr() as u64,
                    nr_ports: ports.len() as u32,
                    timeout,
                };
                // SAFETY: `p` and the port array it points to live across
                // the call.
                unsafe { call2(nr::SCHED_OP, SCHEDOP_POLL as u64, ptr(&p)) }
            }
        };
        ret(r)
    }

    fn hvm_op(&self, op: HvmOp<'_>) -> HvResult {
        let (cmd, p) = match op {
            HvmOp::SetParam(a) => (HVMOP_SET_PARAM, ptr(a)),
            HvmOp::GetParam(a) => (HVMOP_GET_PARAM, a as *mut _ as u64),
            HvmOp::GetTime(a) => (HVMOP_GET_TIME, a as *mut _ as u64),
            HvmOp::SetEvtchnUpcallVector(a) => (HVMOP_SET_EVTCHN_UPCALL_VECTOR, ptr(a)),
        };
        // SAFETY: see memory_op.
        ret(unsafe { call2(nr::HVM_OP, cmd as u64, p) })
    }

    fn vcpu_op(&self, op: VcpuOp<'_>) -> HvResult {
        let (cmd, p) = match op {
            VcpuOp::SetSingleshotTimer(t) => (VCPUOP_SET_SINGLESHOT_TIMER, ptr(t)),
            VcpuOp::StopSingleshotTimer => (VCPUOP_STOP_SINGLESHOT_TIMER, 0),
        };
        // SAFETY: see memory_op; vCPU 0 is the caller.
        ret(unsafe { call3(nr::VCPU_OP, cmd as u64, 0, p) })
    }

    fn console_io(&self, op: ConsoleIoOp<'_>) -> HvResult {
        match op {
            ConsoleIoOp::Write(b) => {
                // SAFETY: Xen reads `b.len()` bytes at `b`.
                ret(unsafe {
                    call3(
                        nr::CONSOLE_IO,
                        console_io::CONSOLEIO_WRITE as u64,
                        b.len() as u64,
                        b.as_ptr() as u64,
                    )
                })
            }
        }
    }

    fn now_ns(&self) -> u64 {
        match self.shared_info() {
            Some((_, si)) => clock::now_ns(&si),
            None => {
                let mut t = XenHvmGetTime::default();
                let _ = self.hvm_op(HvmOp::GetTime(&mut t));
                t.now
            }
        }
    }

    fn shared_info(&self) -> Option<(Gfn, SharedMem)> {
        let g = SHARED_INFO_GFN.load(Ordering::Relaxed);
        if g == 0 {
            return None;
        }
        self.page(Gfn(g)).map(|m| (Gfn(g), m))
    }
}

impl GuestMemory for Pvh {
    fn alloc_pages(&self, n: usize) -> Option<Gfn> {
        let layout = Layout::from_size_align(n.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()?;
        // SAFETY: a non-zero-sized, page-aligned layout.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        NonNull::new(p).map(|p| Gfn::containing(p.as_ptr() as u64))
    }

    fn free_pages(&self, gfn: Gfn, n: usize) {
        if let Ok(layout) = Layout::from_size_align(n * PAGE_SIZE, PAGE_SIZE) {
            // SAFETY: the caller returns pages it got from `alloc_pages`
            // with the same count (identity mapping: address = gpa).
            unsafe { alloc::alloc::dealloc(gfn.gpa() as *mut u8, layout) };
        }
    }

    fn alloc_hole(&self, n: usize) -> Option<Gfn> {
        let first = HOLE.lock().as_mut()?.alloc(n)?;
        Some(Gfn(HOLE_FIRST + first as u64))
    }

    fn free_hole(&self, gfn: Gfn, n: usize) {
        if let (Some(b), Some(i)) = (HOLE.lock().as_mut(), gfn.0.checked_sub(HOLE_FIRST)) {
            b.free(i as usize, n);
        }
    }

    fn pages(&self, gfn: Gfn, n: usize) -> Option<SharedMem> {
        let end = gfn.0.checked_add(n as u64)?;
        if gfn.0 == 0 || end > MAPPED_GFN_LIMIT {
            return None;
        }
        let p = NonNull::new(gfn.gpa() as *mut u8)?;
        // SAFETY: the page tables identity-map every GFN below the limit;
        // RAM pages are ours and hole pages are valid once Xen placed a
        // page there (the caller's contract, see `GuestMemory::pages`).
        Some(unsafe { SharedMem::from_raw(p, n * PAGE_SIZE) })
    }
}

static LOGGER: spin::Once<crate::console::ConsoleLogger<Pvh>> = spin::Once::new();

/// From now on print only the records `filter` accepts, and none above
/// `max` (the kernel command line's log levels, once parsed; first call
/// wins). No effect before [`init_logging`].
pub fn set_log_filter(max: log::LevelFilter, filter: crate::console::LogFilter) {
    if let Some(l) = LOGGER.get() {
        l.set_filter(filter);
        log::set_max_level(max);
    }
}

/// Send `log` records to the PV console from now on (first call wins).
pub fn init_logging(console: crate::console::Console<Pvh>, level: log::LevelFilter) {
    let logger = LOGGER.call_once(|| crate::console::ConsoleLogger::new(console));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}
