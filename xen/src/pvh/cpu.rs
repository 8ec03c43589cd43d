//! The few CPU instructions the runtime needs, each in one place.

/// `cpuid` with a sub-leaf: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: cpuid only reads CPU state. rbx is reserved by LLVM, so it
    // is saved in a scratch register around the instruction.
    unsafe {
        core::arch::asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) b,
            inlateout("eax") leaf => a,
            inlateout("ecx") sub => c,
            out("edx") d,
            options(nostack, preserves_flags),
        );
    }
    (a, b, c, d)
}

/// `wrmsr`.
///
/// # Safety
/// Writing an MSR changes machine state; the caller knows what `msr` does.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack, preserves_flags),
        );
    }
}

/// `rdmsr`.
///
/// # Safety
/// `msr` must exist on this CPU (reading an unknown MSR faults).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: forwarded to the caller; rdmsr only reads.
    unsafe {
        core::arch::asm!(
            "rdmsr",
            in("ecx") msr,
            out("eax") lo,
            out("edx") hi,
            options(nostack, nomem, preserves_flags),
        );
    }
    ((hi as u64) << 32) | lo as u64
}

/// CR0.
pub fn cr0() -> u64 {
    let v: u64;
    // SAFETY: reading CR0 has no side effect (we run at CPL 0).
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) v, options(nostack, nomem, preserves_flags))
    };
    v
}

/// Write CR0.
///
/// # Safety
/// The new value must keep the CPU in a state the kernel runs in (long
/// mode, paging on, SSE usable).
pub unsafe fn set_cr0(v: u64) {
    // SAFETY: forwarded to the caller. Not `nomem`: changing CR0 (e.g.
    // WP) changes what memory accesses do, so it is ordered with them.
    unsafe { core::arch::asm!("mov cr0, {}", in(reg) v, options(nostack, preserves_flags)) };
}

/// Load CR3 (switch page tables; flushes every non-global TLB entry).
///
/// # Safety
/// `pml4` must be the physical address of a valid top-level table that
/// maps, with the permissions they need, the code, stack and data in use.
pub unsafe fn set_cr3(pml4: u64) {
    // SAFETY: forwarded to the caller; not `nomem`, the page tables must
    // be written before the switch.
    unsafe { core::arch::asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) };
}

/// `out dx, al`: used only for the debug console port (0xe9) and QEMU's
/// exit device, which have no side effects beyond their purpose.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port writes to 0xe9/0xf4 are harmless (Xen logs 0xe9 writes
    // of a PVH guest; unclaimed ports are ignored).
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags));
    }
}

/// The time stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the counter (never rdtscp: Xen under QEMU
    // TCG cannot emulate it without NRIP-save).
    unsafe {
        core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem, preserves_flags));
    }
    ((hi as u64) << 32) | lo as u64
}

/// Stop this vCPU for good (interrupts off, halt).
pub fn halt() -> ! {
    loop {
        // SAFETY: cli/hlt only stop the CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nostack, nomem)) };
    }
}

/// Where Xen's CPUID leaves start (`0x40000000`, or `0x40000100` with
/// Viridian), if this is a Xen guest: scan in 0x100 steps for the
/// "XenVMMXenVMM" signature.
pub fn xen_cpuid_base() -> Option<u32> {
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
        let (max, b, c, d) = cpuid(base, 0);
        (b, c, d) == (0x566e_6558, 0x6558_4d4d, 0x4d4d_566e) && max >= base + 2
    })
}
