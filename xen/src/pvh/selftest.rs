//! Self-tests of the page protection: each breaks one rule on purpose and
//! must end in a page fault reported by [`super::trap`] (vector 14, CR2 in
//! the region it names), which crashes the domain. If the access does not
//! fault, the protection is missing: the test prints `selftest FAILED`
//! and crashes too (on Xen), or stops QEMU with status 7.
//!
//! Chosen by a word on the kernel command line ([`from_cmdline`]); the
//! kernel's main runs the test before anything else. Without Xen the Rust
//! start enters main only when such a word is present, so the QEMU smoke
//! test (`tests/kernel/qemu-smoke.sh`) runs them too:
//!
//! | word | test | expected fault |
//! |---|---|---|
//! | `selftest=wx` | [`write_text`] | write to a present page in `.text` |
//! | `selftest=nx` | [`exec_data`] | instruction fetch from `.data` |
//! | `selftest=guard` | [`touch_guard`] | write to the unmapped guard page (stack overflow) |

use core::fmt::Write;

use super::{cpu, early, paging, Pvh};
use crate::abi::sched::SHUTDOWN_CRASH;
use crate::hypervisor::HypervisorExt;

/// `isa-debug-exit` code when a self-test did not fault: QEMU exits with 7.
pub const EXIT_NOT_FAULTED: u8 = 3;

/// The self-test the command line asks for (`selftest=wx`, `selftest=nx`
/// or `selftest=guard`), if any.
pub fn from_cmdline(cmdline: &str) -> Option<fn() -> !> {
    cmdline.split_ascii_whitespace().find_map(|w| match w {
        "selftest=wx" => Some(write_text as fn() -> !),
        "selftest=nx" => Some(exec_data as fn() -> !),
        "selftest=guard" => Some(touch_guard as fn() -> !),
        _ => None,
    })
}

/// Write to `.text` (this function's own first byte, rewritten with its
/// own value): must fault, text is read-only.
pub fn write_text() -> ! {
    let f: fn() -> ! = write_text;
    let p = f as usize as *mut u8;
    let text = paging::layout().text;
    let _ = writeln!(
        early::Port,
        "selftest=wx: writing to .text at {:#x} (text {:#x}-{:#x}): must fault",
        p as u64,
        text.start,
        text.end
    );
    // SAFETY: deliberately invalid: the page is mapped read-only, so this
    // faults and the exception handler ends the kernel. Were it writable,
    // the byte is rewritten with its own value, so the code stays intact.
    unsafe {
        let v = core::ptr::read_volatile(p);
        core::ptr::write_volatile(p, v);
    }
    not_faulted("wrote to .text")
}

/// Bytes in `.data` that would be a harmless function (`ret`) if data
/// were executable.
static mut RET_IN_DATA: [u8; 16] = [0xc3; 16];

/// Call a `ret` instruction placed in `.data`: must fault, data is NX.
pub fn exec_data() -> ! {
    let p = (&raw const RET_IN_DATA) as u64;
    let data = paging::layout().data;
    let _ = writeln!(
        early::Port,
        "selftest=nx: calling code in .data at {p:#x} (data {:#x}-{:#x}): must fault",
        data.start,
        data.end
    );
    if !data.contains(&p) {
        not_faulted("the ret bytes are not in .data");
    }
    // SAFETY: deliberately invalid: the page is NX, so the call faults on
    // the instruction fetch. Were it executable, the bytes are `ret`, so
    // the call returns at once and clobbers only what the C ABI allows.
    unsafe { core::arch::asm!("call {p}", p = in(reg) p, clobber_abi("C")) };
    not_faulted("executed .data")
}

/// Overflow the boot stack by recursion: must fault on the unmapped guard
/// page below it (the exception stack keeps the handler alive).
pub fn touch_guard() -> ! {
    let l = paging::layout();
    let _ = writeln!(
        early::Port,
        "selftest=guard: overflowing the boot stack {:#x}-{:#x} into its guard page {:#x}-{:#x}: must fault",
        l.stack.start,
        l.stack.end,
        l.guard.start,
        l.guard.end
    );
    let depth = eat_stack(0);
    let _ = writeln!(early::Port, "selftest=guard: recursion ended at {depth}");
    not_faulted("overflowed the boot stack")
}

/// Recurse with 1 KiB frames until the stack runs out. The buffer is used
/// after the call, so the recursion cannot become a loop.
#[inline(never)]
fn eat_stack(depth: u64) -> u64 {
    let mut buf = [0u8; 1024];
    buf[0] = depth as u8;
    core::hint::black_box(&mut buf);
    // 1 GiB of frames: the stack (256 KiB) ends long before.
    let deeper = if depth < 1 << 20 {
        eat_stack(depth + 1)
    } else {
        depth
    };
    core::hint::black_box(&buf);
    deeper
}

fn not_faulted(what: &str) -> ! {
    let _ = writeln!(early::Port, "selftest FAILED: {what} without a page fault");
    if super::hypercalls_ready() {
        let _ = Pvh.shutdown(SHUTDOWN_CRASH);
    }
    cpu::outb(super::start::QEMU_EXIT_PORT, EXIT_NOT_FAULTED);
    cpu::halt()
}
