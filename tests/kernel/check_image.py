#!/usr/bin/env python3
"""Static checks of the PVH kernel image (an ELF64 file), read directly:

- it is a static executable (ET_EXEC, x86-64), with no dynamic section,
  no interpreter and no relocation sections;
- no symbol is undefined;
- a PT_NOTE segment holds a "Xen" note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)
  whose value is the ELF entry point, and the entry lies in an executable
  PT_LOAD segment below 4 GiB;
- no PT_LOAD segment is both writable and executable.

Prints one line per check and exits 1 if any fails.
"""
import struct
import sys

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PF_X, PF_W = 1, 2
SHT_SYMTAB, SHT_RELA, SHT_REL, SHT_DYNSYM = 2, 4, 9, 11
SHN_UNDEF = 0


def main(path):
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
     e_shentsize, e_shnum, _) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    check(e_type == 2 and e_machine == 62, "static executable for x86-64 (ET_EXEC)")
    phdrs = [struct.unpack_from("<IIQQQQQQ", data, e_phoff + i * e_phentsize) for i in range(e_phnum)]
    check(not any(p[0] in (PT_DYNAMIC, PT_INTERP) for p in phdrs), "no dynamic section or interpreter")
    loads = [p for p in phdrs if p[0] == PT_LOAD]
    check(all(not (p[1] & PF_W and p[1] & PF_X) for p in loads),
          "no PT_LOAD segment is both writable and executable: "
          + ", ".join("%#x %s" % (p[3], "".join(c for c, b in (("R", 4), ("W", 2), ("X", 1)) if p[1] & b)) for p in loads))
    entry_exec = any(p[1] & PF_X and p[3] <= e_entry < p[3] + p[6] for p in loads)
    check(entry_exec and e_entry < 1 << 32, "entry %#x in an executable segment below 4 GiB" % e_entry)

    note_entry = None
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
            off = doff + ((descsz + 3) & ~3)
    check(note_entry == e_entry,
          "PT_NOTE Xen type 18 (PHYS32_ENTRY) = %s, entry %#x" % (hex(note_entry) if note_entry is not None else "missing", e_entry))

    shdrs = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)] if e_shoff else []
    check(not any(s[1] in (SHT_RELA, SHT_REL) for s in shdrs), "no relocation sections")
    undefined = []
    for s in shdrs:
        if s[1] not in (SHT_SYMTAB, SHT_DYNSYM):
            continue
        strtab = shdrs[s[6]]
        for i in range(1, s[5] // 24):
            st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", data, s[4] + i * 24)
            if st_shndx == SHN_UNDEF and st_name:
                nm = data[strtab[4] + st_name: data.index(b"\0", strtab[4] + st_name)].decode()
                undefined.append(nm)
    check(any(s[1] == SHT_SYMTAB for s in shdrs), "symbol table present (for the undefined-symbol check)")
    check(not undefined, "no undefined symbols" + (": " + ", ".join(undefined) if undefined else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: check_image.py VMLINUZ", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
