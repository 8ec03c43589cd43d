//! The PVH entry: the ELF note that makes Xen (and QEMU) boot us as PVH,
//! and the 32-bit stub that gets from the PVH entry state to Rust.
//!
//! At entry (docs/misc/pvh.pandoc) the CPU is in 32-bit protected mode,
//! paging off, `ebx` = physical address of `hvm_start_info`, CR4 = 0, no
//! stack, GDT or IDT (Xen enters with `esp = 0`; QEMU happens to leave a
//! usable one, so only real Xen catches a stub that pushes too early). The
//! stub, in order: saves `ebx`; takes the boot stack; builds page tables
//! identity-mapping 0..5 GiB with 2 MiB pages (RAM, the special pages below
//! 4 GiB, and the 4..5 GiB hole where Xen places foreign grant mappings);
//! enables PAE and SSE (CR4.OSFXSR/OSXMMEXCPT, CR0.MP, !CR0.EM: compiled
//! Rust uses xmm registers anywhere); sets EFER.LME and NXE; turns paging
//! on; loads a 64-bit GDT; far-returns into 64-bit code; loads the data
//! segments and the boot stack; and calls [`super::start::pvh_start64`]
//! with the start info address. Nothing here touches memory outside the
//! image. These boot tables map everything read-write-execute; once in
//! Rust, [`super::paging`] replaces them with W^X tables and an unmapped
//! guard page below the stack.

use super::start::pvh_start64;

/// Bytes of the boot stack.
pub const STACK_SIZE: usize = 256 * 1024;
/// Page directories in the boot tables: 5 x 1 GiB.
const BOOT_PDS: usize = 5;

#[repr(C, align(4096))]
pub(super) struct PageTable(pub(super) [u64; 512]);

#[repr(C, align(4096))]
pub(super) struct Stack([u8; STACK_SIZE]);

// The boot page tables and stack live in .bss (zeroed by the loader). They
// are only ever touched by the stub below, through `sym`. The stack has its
// own input section: the linker script puts it at a page boundary right
// above the guard page (`__stack_bottom`).
#[unsafe(no_mangle)]
static mut BOOT_PML4: PageTable = PageTable([0; 512]);
#[unsafe(no_mangle)]
static mut BOOT_PDPT: PageTable = PageTable([0; 512]);
#[unsafe(no_mangle)]
static mut BOOT_PD: [PageTable; BOOT_PDS] = [const { PageTable([0; 512]) }; BOOT_PDS];
#[unsafe(no_mangle)]
#[unsafe(link_section = ".bss.boot_stack")]
pub(super) static mut BOOT_STACK: Stack = Stack([0; STACK_SIZE]);

core::arch::global_asm!(
    // XEN_ELFNOTE_PHYS32_ENTRY: namesz 4, descsz 4, type 18, "Xen", entry.
    ".pushsection .note.Xen, \"a\"",
    ".balign 4",
    ".long 4",
    ".long 4",
    ".long 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long _start32",
    ".popsection",

    ".pushsection .text.boot32, \"ax\"",
    ".code32",
    ".global _start32",
    "_start32:",
    "cli",
    "cld",
    "mov esi, ebx",
    // PVH gives no stack (Xen enters with esp = 0): take ours before the
    // first push (the far return below).
    "mov esp, offset {stack}",
    "add esp, {stack_size}",
    // PML4[0] -> PDPT
    "mov eax, offset {pdpt}",
    "or eax, 3",
    "mov dword ptr [{pml4}], eax",
    // PDPT[i] -> PD[i]
    "xor ecx, ecx",
    ".Lpdpt:",
    "mov eax, ecx",
    "shl eax, 12",
    "add eax, offset {pd}",
    "or eax, 3",
    "mov dword ptr [{pdpt} + ecx * 8], eax",
    "inc ecx",
    "cmp ecx, {npd}",
    "jb .Lpdpt",
    // PD entries: 2 MiB pages, present + writable + PS.
    "xor ecx, ecx",
    ".Lpde:",
    "mov eax, ecx",
    "shl eax, 21",
    "or eax, 0x83",
    "mov edx, ecx",
    "shr edx, 11",
    "mov dword ptr [{pd} + ecx * 8], eax",
    "mov dword ptr [{pd} + ecx * 8 + 4], edx",
    "inc ecx",
    "cmp ecx, {npde}",
    "jb .Lpde",
    // CR4: PAE | OSFXSR | OSXMMEXCPT
    "mov eax, cr4",
    "or eax, 0x620",
    "mov cr4, eax",
    "mov eax, offset {pml4}",
    "mov cr3, eax",
    // EFER: LME | NXE
    "mov ecx, 0xC0000080",
    "rdmsr",
    "or eax, 0x900",
    "wrmsr",
    // CR0: PG | MP, clear EM
    "mov eax, cr0",
    "and eax, 0xFFFFFFFB",
    "or eax, 0x80000002",
    "mov cr0, eax",
    "lgdt [.Lgdtr]",
    "mov eax, offset .Llong",
    "push 0x08",
    "push eax",
    "retf",
    ".code64",
    ".Llong:",
    "mov ax, 0x10",
    "mov ds, ax",
    "mov es, ax",
    "mov ss, ax",
    "xor eax, eax",
    "mov fs, ax",
    "mov gs, ax",
    "lea rsp, [rip + {stack}]",
    "add rsp, {stack_size}",
    "xor ebp, ebp",
    "mov edi, esi",
    "call {start}",
    "ud2",

    ".balign 8",
    ".Lgdt:",
    ".quad 0",
    ".quad 0x00AF9A000000FFFF",
    ".quad 0x00CF92000000FFFF",
    ".Lgdtr:",
    ".word 23",
    ".long .Lgdt",
    ".popsection",
    pml4 = sym BOOT_PML4,
    pdpt = sym BOOT_PDPT,
    pd = sym BOOT_PD,
    npd = const BOOT_PDS,
    npde = const BOOT_PDS * 512,
    stack = sym BOOT_STACK,
    stack_size = const STACK_SIZE,
    start = sym pvh_start64,
);
