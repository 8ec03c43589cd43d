//! Raw hypercalls through the hypercall page (PVH backend).
//!
//! Xen fills a page of ours with one 32-byte stub per hypercall once we
//! write the page's address to the MSR that CPUID leaf `base + 2` names;
//! hypercall `n` is then `call page + n * 32`, with the number in `rax` and
//! arguments in `rdi, rsi, rdx, r10, r8`. The page must be installed while
//! in long mode: doing it latches the 64-bit shared info layout.

#![allow(unsafe_code)]

core::arch::global_asm!(
    ".pushsection .text.hypercall_page, \"ax\"",
    ".balign 4096",
    ".global xen_hypercall_page",
    "xen_hypercall_page:",
    // `ret` everywhere until Xen writes the stubs (a cheap install check).
    ".fill 4096, 1, 0xc3",
    ".popsection",
);

unsafe extern "C" {
    static xen_hypercall_page: [u8; 4096];
}

/// Address of the hypercall page (identity-mapped: virtual = physical).
pub fn page_addr() -> u64 {
    (&raw const xen_hypercall_page) as u64
}

/// The first byte of the page: `0xc3` until Xen has filled it.
pub fn page_first_byte() -> u8 {
    // SAFETY: the page is part of our image, mapped and readable; Xen may
    // have written it, hence the volatile read.
    unsafe { core::ptr::read_volatile(page_addr() as *const u8) }
}

/// Issue hypercall `nr` with five arguments; returns Xen's `long` result.
///
/// # Safety
/// The page must have been installed, and every argument must be what the
/// hypercall expects: pointers must point to live, mapped structs of the
/// right type for the duration of the call.
#[inline]
pub unsafe fn call5(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let entry = page_addr() + nr as u64 * 32;
    let ret: i64;
    // SAFETY: the caller guarantees the page is installed and the arguments
    // are valid; the stub follows the hypercall ABI (it may clobber the
    // argument registers, declared here) and returns with `ret`. No
    // `nostack`: `call` pushes, so the compiler keeps nothing below rsp.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rax") nr as u64 => ret,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            out("rcx") _,
            out("r11") _,
        );
    }
    ret
}

/// Two-argument form of [`call5`].
///
/// # Safety
/// As for [`call5`].
#[inline]
pub unsafe fn call2(nr: u32, a1: u64, a2: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { call5(nr, a1, a2, 0, 0, 0) }
}

/// Three-argument form of [`call5`].
///
/// # Safety
/// As for [`call5`].
#[inline]
pub unsafe fn call3(nr: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { call5(nr, a1, a2, a3, 0, 0) }
}
