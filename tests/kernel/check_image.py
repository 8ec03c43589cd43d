#!/usr/bin/env python3
"""Static checks of the PVH kernel image (an ELF64 file), read directly:

- it is a static executable (ET_EXEC, x86-64), with no dynamic section,
  no interpreter and no relocation sections;
- no symbol is undefined;
- a PT_NOTE segment holds a "Xen" note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)
  whose value is the ELF entry point, and the entry lies in an executable
  PT_LOAD segment below 4 GiB;
- no PT_LOAD segment is both writable and executable, each starts on a
  4 KiB page and no two share a page (so the W^X page tables built at boot,
  xen/src/pvh/paging.rs, can give each segment exactly its permissions);
- the linker-script symbols those tables use exist and are page aligned,
  .text lies in the executable segment, and the guard page is one page
  directly below the boot stack;
- nothing that would make two builds differ: no GNU build-id note, no
  .comment section, and none of the --forbid strings (the build machine's
  source directory, $HOME, cargo's home) anywhere in the file.

usage: check_image.py VMLINUZ [--forbid STRING]...
Prints one line per check and exits 1 if any fails.
"""
import argparse
import struct
import sys

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PF_X, PF_W = 1, 2
SHT_SYMTAB, SHT_RELA, SHT_REL, SHT_DYNSYM = 2, 4, 9, 11
SHN_UNDEF = 0
PAGE = 4096
LAYOUT_SYMBOLS = ("__text_start", "__text_end", "__rodata_end", "__stack_guard",
                  "__stack_bottom", "__stack_top", "__kernel_end")


def main(path, forbid):
    data = open(path, "rb").read()
    ok = True

    def check(cond, what):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + what)
        ok = ok and cond

    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        print("FAIL not a little-endian ELF64 file")
        return 1
    (e_type, e_machine, _, e_entry, e_phoff, e_shoff, _, _, e_phentsize, e_phnum,
     e_shentsize, e_shnum, e_shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    check(e_type == 2 and e_machine == 62, "static executable for x86-64 (ET_EXEC)")
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize) for i in range(e_phnum)]
    check(not any(p[0] in (PT_DYNAMIC, PT_INTERP) for p in phdrs), "no dynamic section or interpreter")
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    check(all(not (p[1] & PF_W and p[1] & PF_X) for p in loads),
          "no PT_LOAD segment is both writable and executable: "
          + ", ".join("%#x %s" % (p[3], "".join(c for c, b in (("R", 4), ("W", 2), ("X", 1)) if p[1] & b)) for p in loads))
    pages = [(p[3] // PAGE, (p[3] + p[6] + PAGE - 1) // PAGE) for p in sorted(loads, key=lambda p: p[3])]
    check(all(p[3] % PAGE == 0 for p in loads)
          and all(a[1] <= b[0] for a, b in zip(pages, pages[1:])),
          "every PT_LOAD segment starts on a page and none shares a page with another")
    entry_exec = any(p[1] & PF_X and p[3] <= e_entry < p[3] + p[6] for p in loads)
    check(entry_exec and e_entry < 1 << 32, "entry %#x in an executable segment below 4 GiB" % e_entry)

    note_entry = None
    build_id = False
    for p in phdrs:
        if p[0] != PT_NOTE:
            continue
        off, end = p[2], p[2] + p[5]
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            name = data[off + 12: off + 12 + namesz].rstrip(b"\0")
            doff = off + 12 + ((namesz + 3) & ~3)
            desc = data[doff: doff + descsz]
            if name == b"Xen" and ntype == 18 and descsz in (4, 8):
                note_entry = int.from_bytes(desc, "little")
            if name == b"GNU" and ntype == 3:
                build_id = True
            off = doff + ((descsz + 3) & ~3)
    check(note_entry == e_entry,
          "PT_NOTE Xen type 18 (PHYS32_ENTRY) = %s, entry %#x" % (hex(note_entry) if note_entry is not None else "missing", e_entry))

    shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)] if e_shoff else []

    def cstr(off):
        return data[off: data.index(b"\0", off)].decode()

    shnames = [cstr(shdrs[e_shstrndx][4] + s[0]) for s in shdrs] if shdrs else []
    check(not any(s[1] in (SHT_RELA, SHT_REL) for s in shdrs), "no relocation sections")
    undefined = []
    symbols = {}
    for s in shdrs:
        if s[1] not in (SHT_SYMTAB, SHT_DYNSYM):
            continue
        strtab = shdrs[s[6]]
        for i in range(1, s[5] // 24):
            st_name, _, _, st_shndx, st_value, _ = struct.unpack_from("<IBBHQQ", data, s[4] + i * 24)
            if not st_name:
                continue
            nm = cstr(strtab[4] + st_name)
            if st_shndx == SHN_UNDEF:
                undefined.append(nm)
            else:
                symbols[nm] = st_value
    check(any(s[1] == SHT_SYMTAB for s in shdrs), "symbol table present (for the undefined-symbol check)")
    check(not undefined, "no undefined symbols" + (": " + ", ".join(undefined) if undefined else ""))

    missing = [n for n in LAYOUT_SYMBOLS if n not in symbols]
    check(not missing and all(symbols[n] % PAGE == 0 for n in LAYOUT_SYMBOLS),
          "page-table layout symbols present and page aligned"
          + (": missing " + ", ".join(missing) if missing else
             ": " + ", ".join("%s %#x" % (n, symbols[n]) for n in LAYOUT_SYMBOLS)))
    if not missing:
        text = [p for p in loads
                if p[3] <= symbols["__text_start"] and symbols["__text_end"] <= (p[3] + p[6] + PAGE - 1) // PAGE * PAGE]
        check(len(text) == 1 and text[0][1] & PF_X and not text[0][1] & PF_W,
              ".text (__text_start..__text_end) is inside the RX segment")
        check(symbols["__stack_bottom"] - symbols["__stack_guard"] == PAGE
              and symbols.get("BOOT_STACK") == symbols["__stack_bottom"],
              "guard page %#x is one page, right below the boot stack (BOOT_STACK %s)"
              % (symbols["__stack_guard"], hex(symbols["BOOT_STACK"]) if "BOOT_STACK" in symbols else "missing"))

    check(not build_id and ".comment" not in shnames,
          "no GNU build-id note and no .comment section (reproducible bytes)")
    for s in forbid:
        # "/" or a tiny $HOME would match anything: only real paths count.
        if len(s.strip("/")) < 3:
            continue
        at = data.find(s.encode())
        check(at < 0, "build machine path %r not in the image" % s
              + (" (found at file offset %#x)" % at if at >= 0 else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Static checks of the PVH kernel image.")
    ap.add_argument("vmlinuz")
    ap.add_argument("--forbid", action="append", default=[], metavar="STRING",
                    help="a string (a build machine path) that must not occur in the image")
    args = ap.parse_args()
    sys.exit(main(args.vmlinuz, args.forbid))
