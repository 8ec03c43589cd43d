//! W^X page tables, built once after boot.
//!
//! The boot stub ([`super::boot`]) maps 0..5 GiB read-write-execute with
//! 2 MiB pages. [`enable`] replaces that with tables where no page is both
//! writable and executable, still identity-mapped (virtual = physical):
//!
//! | range | pages | access |
//! |---|---|---|
//! | page 0 | 4 KiB | unmapped (null pointer guard) |
//! | 4 KiB .. `.text` | 4 KiB | RW, NX (low RAM) |
//! | `.text` (boot stub, hypercall page, code) | 4 KiB | RX |
//! | `.rodata` (with the PVH note) | 4 KiB | R, NX |
//! | `.data` | 4 KiB | RW, NX |
//! | guard page below the boot stack | 4 KiB | unmapped |
//! | boot stack, `.bss`, the heap after the image | 4 KiB to the next 2 MiB | RW, NX |
//! | the rest of 0..4 GiB: RAM, the special pages (xenstore and console rings) | 2 MiB | RW, NX |
//! | 4..5 GiB, the hole: shared info, grant table frames, foreign grant maps | 2 MiB | RW, NX |
//!
//! 4 KiB pages are used only for the 2 MiB regions the image touches. The
//! hole must stay mapped: Xen places pages there in our physical address
//! space (XENMEM_add_to_physmap, GNTTABOP_map_grant_ref with
//! GNTMAP_host_map on a hole GFN) and we reach them through these tables.
//! Xen itself writes guest memory by physical address (the hypercall page,
//! ring pages), so a read-only mapping of ours never stops it.
//!
//! Region bounds come from the linker script (`firewall/vmlinuz.ld`),
//! which page-aligns every section and puts the guard page right below the
//! boot stack. After the switch, CR0.WP makes read-only pages read-only for
//! the kernel too, and EFER.NXE (already set by the boot stub) makes the NX
//! bit mean something. [`super::selftest`] proves both on a real CPU.

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{cpu, BootCell, HOLE_FIRST, MAPPED_GFN_LIMIT};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const LARGE: u64 = 1 << 7;
const NO_EXEC: u64 = 1 << 63;

const PAGE: u64 = 4096;
const LARGE_PAGE: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// Leaf flags: read-write data (A and D preset, so the CPU never has to
/// write them back).
const RW_NX: u64 = PRESENT | WRITABLE | ACCESSED | DIRTY | NO_EXEC;
const R_NX: u64 = PRESENT | ACCESSED | NO_EXEC;
const RX: u64 = PRESENT | ACCESSED;
/// Non-leaf entries allow everything; the leaves decide.
const TABLE: u64 = PRESENT | WRITABLE | ACCESSED;

/// Page directories: 1 GiB each, 0..5 GiB (RAM and special pages below
/// 4 GiB, the hole above).
const PDS: usize = (MAPPED_GFN_LIMIT * PAGE / GIB) as usize;
/// Page tables for the image: 4 KiB pages over the first `IMAGE_PTS` x
/// 2 MiB (the linker script asserts the image ends below that).
const IMAGE_PTS: usize = 4;

const EFER: u32 = 0xC000_0080;
const EFER_NXE: u64 = 1 << 11;
const CR0_WP: u64 = 1 << 16;

#[repr(C, align(4096))]
struct Table([u64; 512]);

const EMPTY: Table = Table([0; 512]);

/// All the tables: 1 + 1 + 5 + 4 pages of .bss, written once by
/// [`enable`] before CR3 points at them.
#[repr(C)]
struct Tables {
    pml4: Table,
    pdpt: Table,
    pd: [Table; PDS],
    pt: [Table; IMAGE_PTS],
}

static TABLES: BootCell<Tables> = BootCell::new(Tables {
    pml4: EMPTY,
    pdpt: EMPTY,
    pd: [EMPTY; PDS],
    pt: [EMPTY; IMAGE_PTS],
});

static ENABLED: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    // From firewall/vmlinuz.ld, each page aligned.
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __stack_guard: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
    static __kernel_end: u8;
}

/// Where the linker put the image's regions (physical = virtual).
#[derive(Clone, Debug)]
pub struct Layout {
    /// `.text`: RX.
    pub text: Range<u64>,
    /// `.rodata` and the PVH note: R, NX.
    pub rodata: Range<u64>,
    /// `.data`: RW, NX.
    pub data: Range<u64>,
    /// The unmapped page below the boot stack.
    pub guard: Range<u64>,
    /// The boot stack: RW, NX.
    pub stack: Range<u64>,
    /// `.bss` up to the end of the image: RW, NX.
    pub bss: Range<u64>,
}

/// The address of a linker-script symbol, through `lea`: the compiler
/// must not reason about it (it would fold, say, `__stack_bottom ==
/// BOOT_STACK` to false, as distinct objects, and drop the code after an
/// assertion of that).
macro_rules! symbol_addr {
    ($sym:ident) => {{
        let a: u64;
        // SAFETY: `lea` only computes the symbol's address.
        unsafe {
            core::arch::asm!(
                "lea {a}, [rip + {s}]",
                a = out(reg) a,
                s = sym $sym,
                options(pure, nomem, nostack, preserves_flags),
            )
        };
        a
    }};
}

/// The image layout, from the linker script's symbols.
pub fn layout() -> Layout {
    let text = symbol_addr!(__text_start);
    let text_end = symbol_addr!(__text_end);
    let rodata_end = symbol_addr!(__rodata_end);
    let guard = symbol_addr!(__stack_guard);
    let bottom = symbol_addr!(__stack_bottom);
    let top = symbol_addr!(__stack_top);
    let end = symbol_addr!(__kernel_end);
    Layout {
        text: text..text_end,
        rodata: text_end..rodata_end,
        data: rodata_end..guard,
        guard: guard..bottom,
        stack: bottom..top,
        bss: top..end,
    }
}

impl Layout {
    /// Leaf flags of the 4 KiB page at `addr` (inside the 4 KiB region).
    fn page_flags(&self, addr: u64) -> u64 {
        if addr < PAGE || self.guard.contains(&addr) {
            0
        } else if self.text.contains(&addr) {
            RX
        } else if self.rodata.contains(&addr) {
            R_NX
        } else {
            RW_NX
        }
    }

    /// 2 MiB regions from 0 that need 4 KiB pages (those the image touches).
    fn small_regions(&self) -> usize {
        self.bss.end.div_ceil(LARGE_PAGE) as usize
    }

    fn check(&self, boot_stack: u64) {
        let ranges = [
            &self.text,
            &self.rodata,
            &self.data,
            &self.guard,
            &self.stack,
            &self.bss,
        ];
        for r in ranges {
            assert!(
                r.start % PAGE == 0 && r.end % PAGE == 0 && r.start <= r.end,
                "paging: image region {r:#x?} not page aligned (firewall/vmlinuz.ld)"
            );
        }
        assert!(
            self.text.start >= PAGE && self.guard.end - self.guard.start == PAGE,
            "paging: bad layout {self:#x?}"
        );
        assert!(
            self.stack.start == boot_stack,
            "paging: the boot stack ({boot_stack:#x}) is not right above the guard page ({:#x?})",
            self.guard
        );
        assert!(
            self.small_regions() <= IMAGE_PTS,
            "paging: image ends at {:#x}, past the {IMAGE_PTS} x 2 MiB of 4 KiB tables",
            self.bss.end
        );
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |r: &Range<u64>| (r.start, r.end);
        let (t, ro, d, g, s, b) = (
            r(&self.text),
            r(&self.rodata),
            r(&self.data),
            r(&self.guard),
            r(&self.stack),
            r(&self.bss),
        );
        write!(
            f,
            "null 0x0-0x1000 unmapped, text {:#x}-{:#x} RX, rodata {:#x}-{:#x} R, \
             data {:#x}-{:#x} RW, guard {:#x}-{:#x} unmapped, stack {:#x}-{:#x} RW, \
             bss {:#x}-{:#x} RW, 4 KiB pages to {:#x}, then 2 MiB RW to {:#x} \
             (hole {:#x}-{:#x}); NX everywhere but text; CR0.WP, EFER.NXE",
            t.0,
            t.1,
            ro.0,
            ro.1,
            d.0,
            d.1,
            g.0,
            g.1,
            s.0,
            s.1,
            b.0,
            b.1,
            self.small_regions() as u64 * LARGE_PAGE,
            MAPPED_GFN_LIMIT * PAGE,
            HOLE_FIRST * PAGE,
            MAPPED_GFN_LIMIT * PAGE,
        )
    }
}

/// Build the W^X tables, switch CR3 to them (which flushes the TLB: no
/// mapping is global), and turn on CR0.WP and EFER.NXE. Called once, by
/// the Rust start, on the boot stack with interrupts off; returns the
/// layout it mapped. Panics (before touching CR3) if the linker script's
/// layout is not what the tables expect.
pub(super) fn enable(boot_stack: u64) -> Layout {
    assert!(
        !ENABLED.swap(true, Ordering::SeqCst),
        "paging: enable called twice"
    );
    let l = layout();
    l.check(boot_stack);
    let small = l.small_regions();

    // SAFETY: TABLES is touched only here, once (ENABLED), on the only
    // vCPU with interrupts off, before CR3 refers to it; no reference to
    // it exists elsewhere.
    let t = unsafe { &mut *TABLES.0.get() };
    for (i, pt) in t.pt.iter_mut().enumerate().take(small) {
        for (j, e) in pt.0.iter_mut().enumerate() {
            let addr = i as u64 * LARGE_PAGE + j as u64 * PAGE;
            let flags = l.page_flags(addr);
            *e = if flags == 0 { 0 } else { addr | flags };
        }
    }
    for (i, pd) in t.pd.iter_mut().enumerate() {
        for (j, e) in pd.0.iter_mut().enumerate() {
            let region = i * 512 + j;
            *e = if region < small {
                (&raw const t.pt[region]) as u64 | TABLE
            } else {
                (region as u64 * LARGE_PAGE) | LARGE | RW_NX
            };
        }
        t.pdpt.0[i] = (&raw const *pd) as u64 | TABLE;
    }
    t.pml4.0[0] = (&raw const t.pdpt) as u64 | TABLE;
    let pml4 = (&raw const t.pml4) as u64;

    // SAFETY: EFER exists on every x86-64 CPU; setting NXE (if the boot
    // stub did not) only gives the NX bit its meaning, which must happen
    // before tables using it are live (else bit 63 is reserved).
    unsafe {
        let efer = cpu::rdmsr(EFER);
        if efer & EFER_NXE == 0 {
            cpu::wrmsr(EFER, efer | EFER_NXE);
        }
    }
    // SAFETY: the new tables identity-map everything the kernel uses now
    // with the access it needs: this code (text, RX), the boot stack and
    // statics (RW), start info was already copied out; Xen's pages (hole,
    // special pages) stay mapped RW. Loading CR3 flushes the TLB.
    unsafe { cpu::set_cr3(pml4) };
    // SAFETY: WP only makes supervisor writes honour read-only pages, and
    // nothing legitimately writes text or rodata after boot.
    unsafe { cpu::set_cr0(cpu::cr0() | CR0_WP) };
    l
}
