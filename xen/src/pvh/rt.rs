//! The runtime a freestanding Rust kernel must provide itself: the panic
//! handler, the global allocator, the `mem*` functions the compiler calls,
//! and the unwinding symbols the precompiled `alloc` refers to
//! (`rust_eh_personality`, `_Unwind_Resume`; `panic = "abort"` means they
//! never run).

use core::fmt::Write;

use super::{cpu, early, Pvh};
use crate::abi::sched::SHUTDOWN_CRASH;
use crate::hypervisor::HypervisorExt;

#[global_allocator]
static HEAP: talc::TalcLock<spin::mutex::SpinMutex<()>, talc::source::Manual> =
    talc::TalcLock::new(talc::source::Manual);

/// Give `[base, base + size)` to the allocator.
///
/// # Safety
/// The range must be unused RAM, mapped read-write, for good.
pub(super) unsafe fn claim_heap(base: u64, size: u64) {
    // SAFETY: forwarded to the caller.
    let r = unsafe { HEAP.lock().claim(base as *mut u8, size as usize) };
    if r.is_none() {
        panic!("heap of {size} bytes at {base:#x} too small");
    }
}

static PANICKING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = early::Port;
    if PANICKING.swap(true, core::sync::atomic::Ordering::SeqCst) {
        let _ = writeln!(out, "panic while panicking");
        cpu::halt();
    }
    let _ = write!(out, "PANIC: {}", info.message());
    if let Some(l) = info.location() {
        let _ = write!(out, " at {}:{}", l.file(), l.line());
    }
    let _ = writeln!(out);
    log::error!("panic: {info}");
    if super::hypercalls_ready() {
        let _ = Pvh.shutdown(SHUTDOWN_CRASH);
    }
    cpu::halt()
}

/// # Safety
/// Standard `memcpy` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid and disjoint;
    // `rep movsb` copies exactly n bytes forwards (DF is clear).
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// Standard `memmove` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forwards copy is correct when dest is below src or the
        // ranges do not overlap; the caller guarantees validity.
        unsafe { memcpy(dest, src, n) }
    } else {
        // SAFETY: overlapping with dest above src: copy backwards from the
        // last byte with DF set, then clear DF again as the ABI requires.
        unsafe {
            core::arch::asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack),
            );
        }
        dest
    }
}

/// # Safety
/// Standard `memset` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(s: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range is valid for writes.
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") s => _, in("al") c as u8, options(nostack, preserves_flags));
    }
    s
}

/// # Safety
/// Standard `memcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are readable; volatile
        // reads keep the compiler from turning this loop into a memcmp call.
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
/// Standard `bcmp` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded contract.
    unsafe { memcmp(a, b, n) }
}

/// Never called (`panic = "abort"`); referenced by the precompiled `alloc`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Never called: nothing unwinds (the panic handler halts), but the landing
/// pads of the precompiled `alloc` (built for unwinding, e.g. in
/// `alloc::fmt::format`) refer to it.
#[allow(non_snake_case)]
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    cpu::halt()
}
