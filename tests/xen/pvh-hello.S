/*
 * pvh-hello: the smallest freestanding PVH guest, to check the real-Xen harness with a kernel
 * shaped like ours (an ELF with a XEN_ELFNOTE_PHYS32_ENTRY note, no Linux boot protocol).
 * Built by selftest.sh:  gcc -c pvh-hello.S && ld -T pvh-hello.ld
 *
 * Xen enters at pvh_start in 32-bit protected mode, paging off, %ebx = hvm_start_info.
 * It writes to I/O port 0xe9 (Xen prints those lines in `xl dmesg` as "(d<id>) ...":
 *   pvh-hello: PVH entry reached (start_info magic ok)
 *   pvh-hello: cmdline=<the xl cmdline>
 *   pvh-hello: Xen found, hypercall page installed, powering off
 * then sets up the hypercall page (CPUID leaf base+2 gives the MSR) and calls
 * SCHEDOP_shutdown(SHUTDOWN_poweroff), so the domain ends in state "s" with reason 0.
 */
        .set XEN_ELFNOTE_PHYS32_ENTRY, 18
        .set HVM_START_MAGIC, 0x336ec578
        .set HYPERVISOR_sched_op, 29
        .set SCHEDOP_shutdown, 2

        .section .note.Xen, "a", @note
        .balign 4
        .long 2f - 1f                   /* namesz */
        .long 4f - 3f                   /* descsz */
        .long XEN_ELFNOTE_PHYS32_ENTRY  /* type */
1:      .asciz "Xen"
2:      .balign 4
3:      .long pvh_start
4:      .balign 4

        .text
        .code32
        .globl pvh_start
pvh_start:
        cli
        cld
        mov     $stack_top, %esp
        mov     %ebx, %ebp              /* hvm_start_info */
        mov     $msg_entry, %esi
        call    puts
        cmpl    $HVM_START_MAGIC, (%ebp)
        je      1f
        mov     $msg_badmagic, %esi
        call    puts
1:      mov     $msg_cmdline, %esi
        call    puts
        mov     24(%ebp), %esi          /* cmdline_paddr (low half; we live below 4 GiB) */
        test    %esi, %esi
        jz      2f
        call    puts
2:      mov     $msg_nl, %esi
        call    puts

        /* Xen's CPUID leaves: signature "XenVMMXenVMM" at 0x40000000 + n * 0x100 */
        mov     $0x40000000, %edi
3:      mov     %edi, %eax
        cpuid
        cmp     $0x566e6558, %ebx       /* "XenV" */
        jne     4f
        cmp     $0x65584d4d, %ecx       /* "MMXe" */
        jne     4f
        cmp     $0x4d4d566e, %edx       /* "nVMM" */
        je      5f
4:      add     $0x100, %edi
        cmp     $0x40010000, %edi
        jb      3b
        mov     $msg_noxen, %esi
        call    puts
        jmp     halt

5:      lea     2(%edi), %eax
        cpuid                           /* %ebx = MSR that installs the hypercall page */
        mov     %ebx, %ecx
        mov     $hypercall_page, %eax
        xor     %edx, %edx
        wrmsr
        mov     $msg_off, %esi
        call    puts
        mov     $SCHEDOP_shutdown, %ebx
        mov     $shutdown_reason, %ecx
        call    hypercall_page + HYPERVISOR_sched_op * 32
        mov     $msg_stillhere, %esi
        call    puts
halt:   hlt
        jmp     halt

/* puts: write the NUL-terminated string at %esi to port 0xe9 */
puts:   lodsb
        test    %al, %al
        jz      1f
        outb    %al, $0xe9
        jmp     puts
1:      ret

        .section .rodata
msg_entry:      .asciz "pvh-hello: PVH entry reached\n"
msg_badmagic:   .asciz "pvh-hello: BAD hvm_start_info magic\n"
msg_cmdline:    .asciz "pvh-hello: cmdline="
msg_nl:         .asciz "\n"
msg_noxen:      .asciz "pvh-hello: no Xen CPUID leaves\n"
msg_off:        .asciz "pvh-hello: Xen found, hypercall page installed, powering off\n"
msg_stillhere:  .asciz "pvh-hello: SCHEDOP_shutdown returned\n"

        .data
        .balign 4
shutdown_reason: .long 0                /* struct sched_shutdown { reason = SHUTDOWN_poweroff } */

        .bss
        .balign 4096
hypercall_page: .skip 4096
        .skip 4096
stack_top:
