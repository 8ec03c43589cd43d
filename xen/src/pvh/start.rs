//! From the boot stub to the kernel's `main`.
//!
//! [`pvh_start64`] runs on the boot stack in long mode with the boot page
//! tables. It installs the exception handlers, copies what it needs out of
//! `hvm_start_info` (command line, memory map) before anything can
//! overwrite it, switches to the W^X page tables, detects Xen, installs the
//! hypercall page (in long mode, so shared info is latched 64-bit), maps
//! shared info (for pvclock and event channels), hands the RAM after the
//! image to the heap, and calls the kernel's main (see [`crate::pvh_main`]).
//! Without Xen (plain QEMU PVH boot, the CI smoke test) it says so on the
//! debug port and stops QEMU through its exit device, unless the command
//! line asks for a self-test ([`super::selftest`]): then it enters main
//! anyway, with no heap and `xen_version` (0, 0), for main to run the test.

use core::fmt::Write;
use core::sync::atomic::Ordering;

use super::{boot, cpu, early, paging, selftest, trap, Pvh, SHARED_INFO_GFN};
use crate::abi::domid::DOMID_SELF;
use crate::abi::hvm::{HvmMemmapTableEntry, HvmStartInfo, XEN_HVM_START_MAGIC_VALUE};
use crate::abi::memory::{e820, XenAddToPhysmap, XENMAPSPACE_SHARED_INFO};
use crate::hypervisor::{Hypervisor, MemoryOp};
use crate::memory::GuestMemory;

/// Bytes of command line kept.
pub const CMDLINE_MAX: usize = 1024;
/// QEMU `isa-debug-exit` port used when there is no Xen.
pub const QEMU_EXIT_PORT: u16 = 0xf4;

/// What the kernel's main is told about the boot.
#[derive(Debug)]
pub struct BootInfo {
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    /// Xen's version (major, minor); (0, 0) without Xen (main is then
    /// entered only for a self-test).
    pub xen_version: (u16, u16),
    /// The heap: first byte.
    pub heap_start: u64,
    /// The heap: one past the last byte.
    pub heap_end: u64,
    /// `hvm_start_info.version`.
    pub start_info_version: u32,
    /// RAM regions found in the memory map.
    pub ram_regions: u32,
}

impl BootInfo {
    /// The kernel command line (lossy: invalid UTF-8 ends it).
    pub fn cmdline(&self) -> &str {
        let b = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

static BOOT: spin::Once<BootInfo> = spin::Once::new();

unsafe extern "Rust" {
    /// The kernel's main, defined with [`crate::pvh_main`].
    fn pvh_main(boot: &'static BootInfo) -> !;
}

unsafe extern "C" {
    /// End of the image (linker script), page aligned.
    static __kernel_end: u8;
}

fn read_phys<T: Copy>(paddr: u64) -> T {
    // SAFETY: used only before `paging::enable`, while the boot tables
    // identity-map 0..5 GiB (page 0 included); the toolstack
    // placed these structures in our RAM; `T` is plain data (start info
    // structs), valid for any bit pattern; read once, volatile.
    unsafe { core::ptr::read_volatile(paddr as *const T) }
}

/// The Rust entry, called by the boot stub with the start info address.
pub extern "C" fn pvh_start64(start_info: u32) -> ! {
    let mut out = early::Port;
    let _ = writeln!(
        out,
        "mirage-firewall (rust) {}: PVH entry",
        env!("CARGO_PKG_VERSION")
    );
    trap::init();
    let si: HvmStartInfo = read_phys(start_info as u64);
    if si.magic != XEN_HVM_START_MAGIC_VALUE {
        let _ = writeln!(out, "bad hvm_start_info magic {:#x}: stopping", si.magic);
        stop_without_xen(1);
    }
    let mut info = BootInfo {
        cmdline: [0; CMDLINE_MAX],
        cmdline_len: 0,
        xen_version: (0, 0),
        heap_start: 0,
        heap_end: 0,
        start_info_version: si.version,
        ram_regions: 0,
    };
    if si.cmdline_paddr != 0 {
        while info.cmdline_len < CMDLINE_MAX {
            let c: u8 = read_phys(si.cmdline_paddr + info.cmdline_len as u64);
            if c == 0 {
                break;
            }
            info.cmdline[info.cmdline_len] = c;
            info.cmdline_len += 1;
        }
    }
    // The heap: the RAM region holding the end of the image, from there on.
    let kernel_end = (&raw const __kernel_end) as u64;
    if si.version >= 1 {
        for i in 0..si.memmap_entries as u64 {
            let e: HvmMemmapTableEntry = read_phys(si.memmap_paddr + i * 24);
            if e.r#type == e820::RAM {
                info.ram_regions += 1;
                if e.addr <= kernel_end && kernel_end < e.addr + e.size {
                    info.heap_start = kernel_end;
                    info.heap_end = (e.addr + e.size) & !0xfff;
                }
            }
        }
    }

    // Start info is copied: from here on no page is writable and
    // executable, and the boot stack has its guard page.
    let layout = paging::enable((&raw const boot::BOOT_STACK) as u64);
    let _ = writeln!(out, "paging: {layout}");

    let Some(base) = cpu::xen_cpuid_base() else {
        if selftest::from_cmdline(info.cmdline()).is_some() {
            let _ = writeln!(
                out,
                "no Xen hypervisor found (cpuid 0x40000000): entering main for the self-test"
            );
            let boot = BOOT.call_once(|| info);
            // SAFETY: as below; main runs the self-test first, which
            // needs neither Xen nor the heap.
            unsafe { pvh_main(boot) }
        }
        let _ = writeln!(out, "no Xen hypervisor found (cpuid 0x40000000): stopping");
        stop_without_xen(0);
    };
    let v = cpu::cpuid(base + 1, 0).0;
    info.xen_version = ((v >> 16) as u16, v as u16);
    let msr = cpu::cpuid(base + 2, 0).1;
    // SAFETY: the MSR named by CPUID base+2 is Xen's hypercall page MSR;
    // the page is ours, 4 KiB aligned, in the executable image, and we are
    // in long mode (so the 64-bit shared info layout is latched).
    unsafe { cpu::wrmsr(msr, crate::hypercall::page_addr()) };
    if crate::hypercall::page_first_byte() == 0xc3 {
        let _ = writeln!(out, "Xen did not fill the hypercall page: stopping");
        cpu::halt();
    }
    let _ = writeln!(
        out,
        "Xen {}.{} (cpuid base {base:#x}), hypercall page installed",
        info.xen_version.0, info.xen_version.1
    );

    if info.heap_end <= info.heap_start {
        panic!(
            "no RAM region after the image in the memory map (version {}, {} entries)",
            si.version, si.memmap_entries
        );
    }
    // SAFETY: the region is RAM per Xen's memory map, lies after our image
    // and is used by nothing else; start info was copied out above.
    unsafe { super::rt::claim_heap(info.heap_start, info.heap_end - info.heap_start) };
    super::init_hole();

    let gfn = Pvh.alloc_hole(1).expect("hole frame for shared info");
    let r = Pvh.memory_op(MemoryOp::AddToPhysmap(&XenAddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: gfn.0,
    }));
    if let Err(e) = r {
        panic!("mapping shared info failed: {e}");
    }
    SHARED_INFO_GFN.store(gfn.0, Ordering::SeqCst);
    let boot = BOOT.call_once(|| info);
    // SAFETY: `pvh_main` is defined by the kernel binary with the declared
    // signature (through `pvh_main!`), and is called exactly once.
    unsafe { pvh_main(boot) }
}

/// Stop when not on Xen: QEMU's exit device (if present) ends QEMU with
/// status `(code << 1) | 1`; otherwise halt.
fn stop_without_xen(code: u8) -> ! {
    cpu::outb(QEMU_EXIT_PORT, code);
    cpu::halt()
}
