//! CPU exceptions: report them and crash, instead of a silent triple fault.
//!
//! [`init`] loads a GDT of our own (the boot stub's lives in `.text`,
//! which becomes read-only) with a 64-bit TSS, and an IDT with interrupt
//! gates for vectors 0-31 (vectors past the IDT's limit raise #GP, so they
//! are reported too). Every gate switches to a dedicated exception stack
//! (IST1): a stack overflow into the guard page below the boot stack faults
//! with RSP in the guard page, and the CPU could not push the exception
//! frame there.
//!
//! Each vector's entry stub pushes a zero error code if the CPU pushed
//! none, then the vector number, and jumps to a common stub that reads CR2
//! and calls [`exception`] with the frame. That prints one line (vector and
//! its name, error code, RIP, CR2, RSP, RFLAGS) to port 0xe9 and, once the
//! hypercall page is installed, to Xen's console (`console_io`), then
//! crashes the domain (`SCHEDOP_shutdown(crash)`). Without Xen it stops
//! QEMU through its exit device (status 5) or halts. Handlers never return.
//! (On a release build of Xen, such as Debian's 4.17, a domU's
//! `console_io` write is refused; the port 0xe9 line is what reaches
//! `xl dmesg` there, as `(dN) EXCEPTION: ...`.)

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{cpu, early, BootCell, Pvh};
use crate::abi::sched::SHUTDOWN_CRASH;
use crate::hypervisor::{ConsoleIoOp, Hypervisor, HypervisorExt};

/// Bytes of the exception stack (IST1).
const EXC_STACK_SIZE: usize = 16 * 1024;
/// `isa-debug-exit` code on an exception without Xen: QEMU exits with 5.
pub const EXIT_EXCEPTION: u8 = 2;

const KERNEL_CS: u16 = 0x08;
const KERNEL_DS: u16 = 0x10;
const TSS_SEL: u16 = 0x18;

/// null, 64-bit code, data, 64-bit TSS (two slots). Code and data have
/// the accessed bit preset, so the CPU never writes the table when it
/// loads a selector.
#[repr(C, align(16))]
struct Gdt([u64; 5]);

/// The 64-bit TSS (104 bytes) as dwords: RSP0 at byte 4, IST1 at byte 36,
/// the I/O map base at byte 102.
#[repr(C, align(16))]
struct Tss([u32; 26]);

/// 32 gates of 16 bytes.
#[repr(C, align(16))]
struct Idt([u64; 64]);

#[repr(C, align(4096))]
struct ExcStack([u8; EXC_STACK_SIZE]);

#[repr(C, packed)]
struct DescriptorPointer {
    limit: u16,
    base: u64,
}

static GDT: BootCell<Gdt> = BootCell::new(Gdt([0; 5]));
static TSS: BootCell<Tss> = BootCell::new(Tss([0; 26]));
static IDT: BootCell<Idt> = BootCell::new(Idt([0; 64]));
static EXC_STACK: BootCell<ExcStack> = BootCell::new(ExcStack([0; EXC_STACK_SIZE]));

static INSTALLED: AtomicBool = AtomicBool::new(false);
static REPORTING: AtomicBool = AtomicBool::new(false);

unsafe extern "C" {
    /// Addresses of the 32 entry stubs (below), in vector order.
    static xen_exception_stubs: [u64; 32];
}

// Vectors for which the CPU pushes an error code: 8, 10-14, 17, 21, 29, 30.
core::arch::global_asm!(
    ".pushsection .text.xen_exceptions, \"ax\"",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".balign 16",
    "xen_exception_\\v:",
    ".if ((0x60227D00 >> \\v) & 1) == 0",
    "push 0",
    ".endif",
    "push \\v",
    "jmp xen_exception_common",
    ".endr",
    // Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
    "xen_exception_common:",
    "cld",
    "mov rdi, rsp",
    "mov rsi, cr2",
    "and rsp, -16",
    "call {handler}",
    "ud2",
    ".popsection",
    ".pushsection .rodata.xen_exceptions, \"a\"",
    ".balign 8",
    ".global xen_exception_stubs",
    "xen_exception_stubs:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    ".quad xen_exception_\\v",
    ".endr",
    ".popsection",
    handler = sym exception,
);

/// What the common stub hands over: the pushed vector and error code and
/// the frame the CPU pushed.
#[repr(C)]
struct Frame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Load the GDT (with the TSS) and the IDT. Called once, first thing in
/// the Rust start; from then on an exception is reported, not a triple
/// fault.
pub(super) fn init() {
    assert!(
        !INSTALLED.swap(true, Ordering::SeqCst),
        "trap::init called twice"
    );
    let ist_top = EXC_STACK.addr() + EXC_STACK_SIZE as u64;
    let tss = TSS.addr();
    // SAFETY: these statics are written only here, once (INSTALLED), on
    // the only vCPU with interrupts off, before the CPU is told about
    // them; the stub table is constant data from the assembly above.
    let (gdt, idt, tss_words, stubs) = unsafe {
        (
            &mut *GDT.0.get(),
            &mut *IDT.0.get(),
            &mut *TSS.0.get(),
            &xen_exception_stubs,
        )
    };
    // IST1 = top of the exception stack; no I/O permission map.
    tss_words.0[9] = ist_top as u32;
    tss_words.0[10] = (ist_top >> 32) as u32;
    tss_words.0[25] = 104 << 16;
    let limit = 103u64;
    gdt.0 = [
        0,
        0x00AF_9B00_0000_FFFF,
        0x00CF_9300_0000_FFFF,
        (limit & 0xFFFF)
            | ((tss & 0xFF_FFFF) << 16)
            | (0x89 << 40)
            | (((limit >> 16) & 0xF) << 48)
            | (((tss >> 24) & 0xFF) << 56),
        tss >> 32,
    ];
    for (v, &h) in stubs.iter().enumerate() {
        // Present, DPL 0, 64-bit interrupt gate (IF cleared), IST1.
        idt.0[2 * v] = (h & 0xFFFF)
            | ((KERNEL_CS as u64) << 16)
            | (1 << 32)
            | (0x8E << 40)
            | (((h >> 16) & 0xFFFF) << 48);
        idt.0[2 * v + 1] = h >> 32;
    }
    let gdtr = DescriptorPointer {
        limit: (core::mem::size_of::<Gdt>() - 1) as u16,
        base: GDT.addr(),
    };
    let idtr = DescriptorPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: IDT.addr(),
    };
    // SAFETY: the GDT keeps the boot stub's selectors (code 0x08, data
    // 0x10, same descriptors), so reloading CS (far return), the data
    // segments and TR changes nothing for running code; the TSS and IDT
    // are fully written above and live forever in .bss; every IDT entry
    // points at a stub that never returns.
    unsafe {
        core::arch::asm!(
            "lgdt [{gdtr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, {ds}",
            "mov ds, {tmp:e}",
            "mov es, {tmp:e}",
            "mov ss, {tmp:e}",
            "mov {tmp:e}, {tr}",
            "ltr {tmp:x}",
            "lidt [{idtr}]",
            gdtr = in(reg) &raw const gdtr,
            idtr = in(reg) &raw const idtr,
            cs = const KERNEL_CS as u64,
            ds = const KERNEL_DS as u32,
            tr = const TSS_SEL as u32,
            tmp = out(reg) _,
        );
    }
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved",
];

/// One line of text on the exception stack (no heap: it may be what broke).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The common handler: report, then crash. `frame` is on the exception
/// stack, `cr2` was read by the stub before anything could fault again.
extern "C" fn exception(frame: &Frame, cr2: u64) -> ! {
    let mut port = early::Port;
    if REPORTING.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            port,
            "EXCEPTION: vector {} while reporting an exception",
            frame.vector
        );
        crash();
    }
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let name = NAMES.get(frame.vector as usize).copied().unwrap_or("?");
    let _ = write!(
        line,
        "EXCEPTION: vector {} ({name}), error {:#x}, rip {:#x}, cr2 {cr2:#x}, rsp {:#x}, rflags {:#x}, cs {:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, frame.rflags, frame.cs,
    );
    if frame.vector == 14 {
        let e = frame.error;
        let _ = write!(
            line,
            " [{}, {}{}]",
            if e & 1 != 0 {
                "protection violation"
            } else {
                "not present"
            },
            if e & 0x10 != 0 {
                "instruction fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 8 != 0 { ", reserved bit" } else { "" },
        );
    }
    let _ = line.write_str("\n");
    let text = &line.buf[..line.len];
    let _ = port.write_str(core::str::from_utf8(text).unwrap_or("EXCEPTION\n"));
    if super::hypercalls_ready() {
        let _ = Pvh.console_io(ConsoleIoOp::Write(text));
    }
    crash()
}

/// Crash the domain (Xen), else stop QEMU with status 5, else halt.
fn crash() -> ! {
    if super::hypercalls_ready() {
        let _ = Pvh.shutdown(SHUTDOWN_CRASH);
    }
    cpu::outb(super::start::QEMU_EXIT_PORT, EXIT_EXCEPTION);
    cpu::halt()
}
