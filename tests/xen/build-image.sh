#!/bin/bash
# Build (or reuse, if up to date) everything needed to boot real Xen + a Debian dom0 under
# qemu-system-x86_64 (TCG), all from Debian packages, into the cache directory
#   ${XEN_TCG_CACHE:-$HOME/.cache/rust-fw-xen-tcg}
# outside the repository:
#   xen.elf            Xen 4.17 hypervisor (gunzipped; QEMU loads it with -kernel, multiboot)
#   vmlinuz, vmlinux   the Debian kernel (bzImage) and its uncompressed ELF; the ELF is both
#                      the PV dom0 kernel and the Linux PVH domU kernel (loads ~5 s faster)
#   dom0-initrd.img    dom0's small initramfs (dom0-stage1.sh: virtio disk, ext4, switch_root)
#   dom0.img           ext4 root fs of dom0: debootstrap minbase + Xen toolstack + test tools,
#                      our PID 1 (dom0-init.sh as /sbin/xt-init), dom0-lib.sh, and in
#                      /var/lib/xt/ the domU kernel (domU-vmlinux) and initramfs
#   domU-initrd.gz     busybox initramfs for Linux client domUs (init: domU-init.sh)
#   qemu.env           which qemu-system-x86_64 to use (system one, or a private copy in qemu/)
#   manifest.txt       versions
# Each stage is redone only when its inputs change (stamps in $XT_CACHE/stamps/); a second
# run with nothing changed takes well under a second. FRESH=1 rebuilds everything (and picks
# up the newest kernel and Xen packages).
#
# As root it installs the host packages it needs with apt-get; otherwise it names them.
# It never installs Debian's qemu-system-x86/qemu-utils: on these machines a newer backported
# qemu-utils is installed and installing qemu-system-x86 7.2 would remove it. Instead the QEMU
# 7.2 .debs are unpacked into $XT_CACHE/qemu (only their shared libraries are installed).
set -euo pipefail
. "$(dirname "$0")/common.sh"

# Bump when a stage's recipe changes in a way its inputs below don't capture.
ROOTFS_RECIPE=2
IMAGE_RECIPE=1
DOMU_RECIPE=1

# dom0 userland. The Xen toolstack, plus what the later scenarios need: bridge (uplink),
# iperf3 (throughput), dnsmasq-base (a DNS server for the uplink side), socat (TCP/UDP echo and
# the QubesDB relay), tcpdump/ethtool (debugging, offload switches), python3 (QubesDB service).
# busybox-static instead of busybox: the same static binary is reused in the domU initramfs.
DOM0_PKGS="initramfs-tools kmod linux-base xen-utils-$XT_XENVER xenstore-utils iproute2 bridge-utils
  iputils-ping busybox-static procps netbase python3 iperf3 dnsmasq-base socat tcpdump ethtool"
DOM0_PKGS=$(echo $DOM0_PKGS | tr ' ' ',')
# Kernel modules copied into the domU initramfs (relative to /lib/modules/<kver>/kernel).
DOMU_MODULES="drivers/net/xen-netfront.ko drivers/net/xen-netback/xen-netback.ko
  net/llc/llc.ko net/802/stp.ko net/bridge/bridge.ko"
# Binaries (with their shared libraries) copied from the dom0 rootfs into the domU initramfs.
DOMU_BINS="/usr/bin/iperf3 /usr/bin/tcpdump"

ROOT=$XT_CACHE/rootfs
DEBS=$XT_CACHE/debs
STAMPS=$XT_CACHE/stamps
T_START=$(date +%s)
mkdir -p "$XT_CACHE" "$DEBS" "$STAMPS"

if [ "${FRESH:-0}" = 1 ]; then
  xt_log "FRESH=1: removing previous build state"
  rm -rf "$ROOT" "$STAMPS" "$DEBS" "$XT_CACHE/qemu" "$XT_QEMU_ENV"
  mkdir -p "$DEBS"
  mkdir -p "$STAMPS"
fi

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { echo "$2" > "$STAMPS/$1"; }
is_root() { [ "$(id -u)" = 0 ]; }
APT_UPDATED=0
apt_update_once() { [ $APT_UPDATED = 1 ] || { apt-get update -qq; APT_UPDATED=1; }; }
apt_install() { # pkgs...
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} = 0 ] && return 0
  if ! is_root; then xt_die "missing host packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"; fi
  xt_log "apt-get install ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
apt_download() { # pkg -> prints path of the .deb in $DEBS (downloads if absent)
  local f
  f=$(ls "$DEBS/$1"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$f" ]; then
    ( cd "$DEBS" && { apt-get download -qq "$1" 2>/dev/null || { apt_update_once; apt-get download -qq "$1"; }; } ) >&2
    f=$(ls "$DEBS/$1"_*.deb | head -1)
  fi
  echo "$f"
}

# ---------------------------------------------------------------- host tools
command -v dpkg-deb >/dev/null || xt_die "needs a Debian-based host (dpkg-deb, apt-get)"
apt_install e2fsprogs cpio gzip
command -v python3 >/dev/null || apt_install python3

# ---------------------------------------------------------------- QEMU
# Use $QEMU if given, else a system qemu-system-x86_64, else (or with XT_PRIVATE_QEMU=1) a
# private copy of Debian's QEMU 7.2 unpacked into $XT_CACHE/qemu.
PQ=$XT_CACHE/qemu
write_private_qemu_env() {
  printf 'XT_QEMU=%q\nXT_QEMU_DATADIRS=%q\nXT_QEMU_MODULE_DIR=%q\n' "$PQ/usr/bin/qemu-system-x86_64" \
    "$PQ/usr/share/qemu $PQ/usr/share/seabios" "$PQ/usr/lib/x86_64-linux-gnu/qemu" > "$XT_QEMU_ENV"
}
if [ -n "${QEMU:-}" ]; then
  printf 'XT_QEMU=%q\nXT_QEMU_DATADIRS=\nXT_QEMU_MODULE_DIR=\n' "$QEMU" > "$XT_QEMU_ENV"
elif [ "${XT_PRIVATE_QEMU:-0}" != 1 ] && command -v qemu-system-x86_64 >/dev/null; then
  printf 'XT_QEMU=%q\nXT_QEMU_DATADIRS=\nXT_QEMU_MODULE_DIR=\n' "$(command -v qemu-system-x86_64)" > "$XT_QEMU_ENV"
elif stamp_ok qemu "private-2" && [ -x "$PQ/usr/bin/qemu-system-x86_64" ]; then
  write_private_qemu_env
else
  xt_log "QEMU: unpacking Debian's qemu-system-x86 into $XT_CACHE/qemu (libraries via apt)"
  # the shared libraries qemu-system-x86_64 links against (never qemu-system-common itself)
  LIBS=$(apt-cache depends --no-recommends --no-suggests --no-enhances --no-breaks --no-conflicts \
           --no-replaces qemu-system-x86 2>/dev/null | awk '/Depends:/ && $2 !~ /^</ {print $2}' |
         grep -vE '^(qemu-|seabios|ipxe-qemu)' || true)
  if [ -z "$LIBS" ]; then
    is_root && apt_update_once
    LIBS=$(apt-cache depends --no-recommends --no-suggests --no-enhances --no-breaks --no-conflicts \
             --no-replaces qemu-system-x86 | awk '/Depends:/ && $2 !~ /^</ {print $2}' |
           grep -vE '^(qemu-|seabios|ipxe-qemu)')
  fi
  apt_install $LIBS
  rm -rf "$PQ"; mkdir -p "$PQ"
  # qemu-system-common only for its modules (the TCG accelerator is one: accel-tcg-x86_64.so)
  for p in qemu-system-x86 qemu-system-common qemu-system-data seabios; do
    dpkg-deb -x "$(apt_download $p)" "$PQ"
  done
  missing=$(ldd "$PQ/usr/bin/qemu-system-x86_64" "$PQ"/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so | grep 'not found' || true)
  [ -z "$missing" ] || xt_die "private QEMU misses libraries: $missing"
  write_private_qemu_env
  stamp_set qemu "private-2"
fi
. "$XT_QEMU_ENV"
QEMU_VERSION=$("$XT_QEMU" --version | head -1)

# ---------------------------------------------------------------- rootfs (debootstrap)
# The kernel (linux-image-amd64's current version) and Xen come from inside the chroot, after
# its apt-get update, so their versions match each other and the toolstack, whatever the host's
# apt lists say. They stay as built until the recipe changes or FRESH=1.
ROOTFS_KEY="r$ROOTFS_RECIPE $XT_SUITE $XT_MIRROR $XT_SECURITY_MIRROR $XT_XENVER $DOM0_PKGS"
if stamp_ok rootfs "$ROOTFS_KEY" && [ -s "$STAMPS/rootfs.id" ] && [ -x "$ROOT/usr/sbin/xl" ] &&
   ls "$ROOT"/boot/vmlinuz-* >/dev/null 2>&1 && [ -s "$XT_XEN" ]; then
  xt_log "rootfs: up to date (kernel $(ls "$ROOT/lib/modules" | head -1))"
else
  is_root || xt_die "building the dom0 rootfs needs root (debootstrap, chroot)"
  apt_install debootstrap
  xt_log "rootfs: debootstrap $XT_SUITE minbase + $DOM0_PKGS"
  t0=$(date +%s)
  rm -f "$STAMPS/rootfs" "$STAMPS/rootfs.id"
  # a half-built tree may still have /proc mounted from an interrupted run
  umount "$ROOT/proc" 2>/dev/null || true
  rm -rf "$ROOT"
  debootstrap --variant=minbase --include="$DOM0_PKGS" "$XT_SUITE" "$ROOT" "$XT_MIRROR" \
    > "$XT_CACHE/debootstrap.log" 2>&1 || { tail -30 "$XT_CACHE/debootstrap.log"; xt_die "debootstrap failed (log: $XT_CACHE/debootstrap.log)"; }
  # security updates too, so that dom0's toolstack matches the hypervisor (and the host's
  # libxen-dev) version; then the kernel, and the Xen .deb, from inside the chroot
  xt_log "rootfs: $XT_SUITE-security upgrade, kernel and Xen from the chroot"
  cat > "$ROOT/etc/apt/sources.list" <<EOS
deb $XT_MIRROR $XT_SUITE main
deb $XT_MIRROR $XT_SUITE-updates main
deb $XT_SECURITY_MIRROR $XT_SUITE-security main
EOS
  printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
  mount -t proc proc "$ROOT/proc"
  trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
  { chroot "$ROOT" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get -y -qq upgrade &&
    DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get -y -qq install --no-install-recommends linux-image-amd64 &&
    rm -f "$ROOT"/tmp/xen-hypervisor-*.deb &&
    chroot "$ROOT" sh -c "cd /tmp && apt-get download -qq xen-hypervisor-$XT_XENVER-amd64"
  } > "$XT_CACHE/kernel-install.log" 2>&1 ||
    { tail -20 "$XT_CACHE/kernel-install.log"; xt_die "chroot upgrade / kernel install failed"; }
  rm -f "$ROOT/usr/sbin/policy-rc.d"
  # dom0's initramfs must find the virtio disk and ext4
  printf '%s\n' virtio_pci virtio_blk ext4 > "$ROOT/etc/initramfs-tools/modules"
  KVER=$(ls "$ROOT/lib/modules" | head -1)
  chroot "$ROOT" update-initramfs -u -k "$KVER" >> "$XT_CACHE/kernel-install.log" 2>&1
  umount "$ROOT/proc"; trap - EXIT
  # Xen itself (not installed in dom0: QEMU loads it directly)
  XEN_DEB=$(ls "$ROOT"/tmp/xen-hypervisor-$XT_XENVER-amd64_*.deb | head -1)
  rm -f "$DEBS"/xen-hypervisor-*.deb; mv "$XEN_DEB" "$DEBS/"; XEN_DEB=$DEBS/$(basename "$XEN_DEB")
  rm -rf "$XT_CACHE/xen-deb" && mkdir -p "$XT_CACHE/xen-deb"
  dpkg-deb -x "$XEN_DEB" "$XT_CACHE/xen-deb"
  zcat "$XT_CACHE"/xen-deb/boot/xen-$XT_XENVER-amd64.gz > "$XT_XEN"
  dpkg-deb -f "$XEN_DEB" Version > "$XT_CACHE/xen.version"
  rm -rf "$XT_CACHE/xen-deb"
  # trim: docs, man pages, locales, apt lists
  rm -rf "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/* \
         "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
  echo dom0 > "$ROOT/etc/hostname"
  stamp_set rootfs "$ROOTFS_KEY"
  date +%s.%N > "$STAMPS/rootfs.id"   # what the later stages key on: changes on every rebuild
  xt_log "rootfs: built in $(( $(date +%s) - t0 )) s (kernel $KVER)"
fi
KVER=$(ls "$ROOT/lib/modules" | head -1)
KPKG=linux-image-$KVER
ROOTFS_ID=$(cat "$STAMPS/rootfs.id")

# ---------------------------------------------------------------- kernel
# The Debian bzImage, and its payload as a plain ELF (Xen and libxc load that much faster
# under TCG than they decompress the xz bzImage). If extraction fails, the bzImage is used.
KERNEL_KEY="k1 $ROOTFS_ID $(hash_of "$XT_DIR/extract-vmlinux.py")"
if stamp_ok kernel "$KERNEL_KEY" && [ -s "$XT_VMLINUX" ] && [ -s "$XT_BZIMAGE" ]; then
  xt_log "kernel: up to date"
else
  rm -f "$XT_CACHE/dom0-vmlinuz" "$XT_CACHE/domU-vmlinuz"   # names of an older layout
  cp "$ROOT/boot/vmlinuz-$KVER" "$XT_BZIMAGE"
  if ! python3 "$XT_DIR/extract-vmlinux.py" "$XT_BZIMAGE" "$XT_VMLINUX.tmp"; then
    xt_log "warning: could not extract vmlinux; using the bzImage (slower xl create)"
    cp "$XT_BZIMAGE" "$XT_VMLINUX.tmp"
  fi
  mv "$XT_VMLINUX.tmp" "$XT_VMLINUX"
  stamp_set kernel "$KERNEL_KEY"
  xt_log "kernel: $KVER, vmlinux $(du -h "$XT_VMLINUX" | cut -f1)"
fi

# ---------------------------------------------------------------- dom0 initramfs
# Our own: busybox + the virtio/ext4 modules + dom0-stage1.sh; boots ~7 s faster under TCG than
# Debian's (35 MB, udev). Debian's stays in the rootfs (/boot/initrd.img-*) as a fallback.
DOM0I_KEY="s1 $ROOTFS_ID $(hash_of "$XT_DIR/dom0-stage1.sh")"
if stamp_ok dom0initrd "$DOM0I_KEY" && [ -s "$XT_DOM0_INITRD" ]; then
  xt_log "dom0 initrd: up to date"
else
  is_root || xt_die "building the dom0 initramfs needs root (chroot modprobe)"
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
  mkdir -p "$T/bin"
  cp "$ROOT/bin/busybox" "$T/bin/busybox"
  for m in virtio_pci virtio_blk ext4; do chroot "$ROOT" modprobe -S "$KVER" --show-depends $m; done |
    awk '$1=="insmod"{print $2}' | awk '!seen[$0]++' > "$T/modules.list"
  while read -r ko; do mkdir -p "$T$(dirname "$ko")"; cp "$ROOT$ko" "$T$ko"; done < "$T/modules.list"
  install -m 0755 "$XT_DIR/dom0-stage1.sh" "$T/init"
  ( cd "$T" && find . | cpio -o -H newc --quiet | gzip -6 ) > "$XT_DOM0_INITRD.tmp"
  mv "$XT_DOM0_INITRD.tmp" "$XT_DOM0_INITRD"
  nmod=$(wc -l < "$T/modules.list")
  rm -rf "$T"; trap - EXIT
  stamp_set dom0initrd "$DOM0I_KEY"
  xt_log "dom0 initrd: built ($(du -h "$XT_DOM0_INITRD" | cut -f1), $nmod modules)"
fi

# ---------------------------------------------------------------- domU initramfs
DOMU_KEY="d$DOMU_RECIPE $ROOTFS_ID $(hash_of "$XT_DIR/domU-init.sh") $DOMU_MODULES $DOMU_BINS"
if stamp_ok domU "$DOMU_KEY" && [ -s "$XT_DOMU_INITRD" ]; then
  xt_log "domU initrd: up to date"
else
  is_root || xt_die "building the domU initramfs needs root (chroot ldd)"
  t0=$(date +%s)
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
  mkdir -p "$T"/{bin,sbin,proc,sys,dev,tmp,etc,run,lib/modules,usr/bin}
  cp "$ROOT/bin/busybox" "$T/bin/busybox"   # busybox-static from the dom0 rootfs
  for m in $DOMU_MODULES; do cp "$ROOT/lib/modules/$KVER/kernel/$m" "$T/lib/modules/"; done
  for b in $DOMU_BINS; do
    cp "$ROOT$b" "$T$b"
    # its shared libraries and the dynamic loader, at the same paths
    for lib in $(chroot "$ROOT" ldd "$b" | grep -oE '/[^ ]+' | sort -u); do
      mkdir -p "$T$(dirname "$lib")"; cp -L "$ROOT$lib" "$T$lib"
    done
  done
  install -m 0755 "$XT_DIR/domU-init.sh" "$T/init"
  ( cd "$T" && find . | cpio -o -H newc --quiet | gzip -9 ) > "$XT_DOMU_INITRD.tmp"
  mv "$XT_DOMU_INITRD.tmp" "$XT_DOMU_INITRD"
  rm -rf "$T"; trap - EXIT
  stamp_set domU "$DOMU_KEY"
  xt_log "domU initrd: built in $(( $(date +%s) - t0 )) s ($(du -h "$XT_DOMU_INITRD" | cut -f1))"
fi

# ---------------------------------------------------------------- dom0 image
IMAGE_KEY="i$IMAGE_RECIPE $ROOTFS_ID $(cat "$STAMPS/kernel" "$STAMPS/domU" | sha256sum | cut -c1-16) $(hash_of "$XT_DIR/dom0-init.sh" "$XT_DIR/dom0-lib.sh")"
if stamp_ok image "$IMAGE_KEY" && [ -s "$XT_DOM0_IMG" ]; then
  xt_log "dom0 image: up to date"
else
  is_root || xt_die "building the dom0 image needs root (files in the rootfs tree are root's)"
  t0=$(date +%s)
  install -m 0755 "$XT_DIR/dom0-init.sh" "$ROOT/sbin/xt-init"
  mkdir -p "$ROOT/usr/local/lib/xt" "$ROOT/var/lib/xt"
  install -m 0644 "$XT_DIR/dom0-lib.sh" "$ROOT/usr/local/lib/xt/dom0-lib.sh"
  # the Linux domU kernel + initramfs, so scenario scripts can use them without the share
  rm -f "$ROOT/var/lib/xt/domU-vmlinuz"
  cp "$XT_DOMU_KERNEL" "$ROOT/var/lib/xt/domU-vmlinux"
  cp "$XT_DOMU_INITRD" "$ROOT/var/lib/xt/domU-initrd.gz"
  size_mb=$(( $(du -sm "$ROOT" | cut -f1) + 768 ))
  rm -f "$XT_DOM0_IMG.tmp"; truncate -s "${size_mb}M" "$XT_DOM0_IMG.tmp"
  mkfs.ext4 -q -F -L xt-dom0 -d "$ROOT" "$XT_DOM0_IMG.tmp"
  mv "$XT_DOM0_IMG.tmp" "$XT_DOM0_IMG"
  stamp_set image "$IMAGE_KEY"
  xt_log "dom0 image: built in $(( $(date +%s) - t0 )) s (${size_mb} MiB, sparse)"
fi

# ---------------------------------------------------------------- manifest
{
  echo "xen-hypervisor-$XT_XENVER-amd64 $(cat "$XT_CACHE/xen.version")"
  echo "kernel $KPKG ($KVER)"
  echo "xen-utils-$XT_XENVER $(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' xen-utils-$XT_XENVER 2>/dev/null || echo '?')"
  echo "qemu $XT_QEMU: $QEMU_VERSION"
  echo "suite $XT_SUITE, dom0 packages: $DOM0_PKGS"
} > "$XT_MANIFEST"
xt_log "ready in $(( $(date +%s) - T_START )) s: $XT_CACHE (xen $(cat "$XT_CACHE/xen.version"), kernel $KVER)"
