# Sourced by the host-side scripts in tests/xen/. Paths and knobs shared by all of them.
# Everything big lives in the cache directory, outside the repository.
XT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
XT_CACHE=${XEN_TCG_CACHE:-${HOME:-/root}/.cache/rust-fw-xen-tcg}
XT_SUITE=${XT_SUITE:-bookworm}
XT_MIRROR=${XT_MIRROR:-http://deb.debian.org/debian}
XT_SECURITY_MIRROR=${XT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
XT_XENVER=${XT_XENVER:-4.17}

# Artifacts (all in $XT_CACHE)
XT_XEN=$XT_CACHE/xen.elf                # Xen hypervisor, gunzipped (multiboot ELF32, QEMU -kernel)
XT_BZIMAGE=$XT_CACHE/vmlinuz           # the Debian kernel (bzImage) as shipped
XT_VMLINUX=$XT_CACHE/vmlinux            # the same kernel uncompressed (ELF): loads much faster
XT_DOM0_KERNEL=$XT_VMLINUX              # booted by Xen as the PV dom0
XT_DOM0_INITRD=$XT_CACHE/dom0-initrd.img  # our small initramfs (dom0-stage1.sh)
XT_DOM0_IMG=$XT_CACHE/dom0.img          # ext4 root fs of dom0 (used with snapshot=on: stays pristine)
XT_DOMU_KERNEL=$XT_VMLINUX              # booted as a PVH domU (Linux client VMs)
XT_DOMU_INITRD=$XT_CACHE/domU-initrd.gz # busybox initramfs for Linux client domUs
XT_MANIFEST=$XT_CACHE/manifest.txt      # versions of what was built
XT_QEMU_ENV=$XT_CACHE/qemu.env          # QEMU binary + firmware dir chosen by build-image.sh

xt_log() { printf '[xen-tcg %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
xt_die() { xt_log "error: $*"; exit 125; }
