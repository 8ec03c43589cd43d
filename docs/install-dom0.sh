#!/bin/bash
# Install or upgrade the Rust firewall unikernel in Qubes OS 4.2 (run in dom0).
#
#   install-dom0.sh --from-qube QUBE --path PATH [options]
#   install-dom0.sh --file FILE [options]
#
# Puts the kernel into /var/lib/qubes/vm-kernels/<kernel>/vmlinuz (checking
# its SHA-256 if given), then creates the firewall qube, or, if it exists,
# brings its kernel and settings up to date. Safe to run again. See
# docs/install.md for what each step is for; --help for the options.

set -euo pipefail

PROG=${0##*/}
KERNELS_DIR=/var/lib/qubes/vm-kernels
LABELS="red orange yellow green gray blue purple black"

from_qube=""
src_path=""
src_file=""
name="sys-mirage-firewall"
netvm="sys-net"
label="green"
kernelopts=""
kernel="mirage-firewall"
memory=32
sha256=""
default_netvm=0
initramfs=1
restart=0
dry_run=0
assume_exists=0

usage() {
	cat <<EOF
Usage: $PROG (--from-qube QUBE --path PATH | --file FILE) [options]

Install the firewall unikernel into dom0 and create (or update) its qube.
Run in dom0 as the normal user (sudo is used for the kernel directory
when needed).

Where the kernel comes from (one of):
  --from-qube QUBE   the qube where it was built (make vmlinuz) ...
  --path PATH        ... and its path there, e.g.
                     /home/user/fw/dist/mirage-firewall/vmlinuz
  --file FILE        a kernel already copied into dom0

Options:
  --sha256 HEX       refuse the kernel unless its SHA-256 is HEX
  --name NAME        the firewall qube (default: $name)
  --netvm NETVM      its uplink qube (default: $netvm)
  --label LABEL      its label (default: $label; one of: $LABELS)
  --kernelopts OPTS  its kernel command line (default: empty), e.g.
                     '--ipv4=10.137.0.20 --ipv4-gw=10.137.0.1'
  --memory MIB       memory and maxmem (default: $memory)
  --kernel DIR       the kernel's directory name under $KERNELS_DIR
                     (default: $kernel, where qubes-mirage-firewall
                     installs too: a drop-in replacement)
  --default-netvm    also make the qube the system's default netvm
  --no-initramfs     do not create the empty initramfs file (Qubes 4.2 with
                     current updates does not need it; 4.2.0 does)
  --restart          if the qube is running, restart it on the new kernel
                     (its clients lose the network for a few seconds)
  --dry-run          print every command, run none (a --file is still read
                     to check it and its SHA-256)
  --assume-exists    with --dry-run: show the update of an existing qube
  -h, --help         this text
EOF
}

die() {
	echo "$PROG: error: $*" >&2
	exit 1
}

# Usage errors: the message and a pointer to --help, status 2.
bad_usage() {
	echo "$PROG: $*" >&2
	echo "Try '$PROG --help'." >&2
	exit 2
}

# Print a command as it would be typed, then run it (unless dry run).
run() {
	printf '+'
	printf ' %q' "$@"
	printf '\n'
	if [ "$dry_run" -eq 0 ]; then
		"$@"
	fi
}

# A question to Qubes (its status is the answer): printed, then run; in a
# dry run not run, and `answer` (0 yes, 1 no) stands for its status.
query() {
	local answer=$1
	shift
	printf '+'
	printf ' %q' "$@"
	if [ "$dry_run" -eq 1 ]; then
		printf '   # dry run: assumed %s\n' "$([ "$answer" -eq 0 ] && echo yes || echo no)"
		return "$answer"
	fi
	printf '\n'
	"$@"
}

need_value() {
	if [ "$#" -lt 2 ] || [ -z "$2" ]; then
		bad_usage "option $1 needs a value"
	fi
}

while [ "$#" -gt 0 ]; do
	case "$1" in
	--from-qube) need_value "$@"; from_qube=$2; shift 2 ;;
	--path) need_value "$@"; src_path=$2; shift 2 ;;
	--file) need_value "$@"; src_file=$2; shift 2 ;;
	--sha256) need_value "$@"; sha256=$2; shift 2 ;;
	--name) need_value "$@"; name=$2; shift 2 ;;
	--netvm) need_value "$@"; netvm=$2; shift 2 ;;
	--label) need_value "$@"; label=$2; shift 2 ;;
	--kernelopts)
		[ "$#" -ge 2 ] || bad_usage "option --kernelopts needs a value (use '' for none)"
		kernelopts=$2
		shift 2
		;;
	--memory) need_value "$@"; memory=$2; shift 2 ;;
	--kernel) need_value "$@"; kernel=$2; shift 2 ;;
	--default-netvm) default_netvm=1; shift ;;
	--no-initramfs) initramfs=0; shift ;;
	--restart) restart=1; shift ;;
	--dry-run) dry_run=1; shift ;;
	--assume-exists) assume_exists=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) bad_usage "unknown argument: $1" ;;
	esac
done

# ---- checks of the arguments ------------------------------------------------

[ -z "$src_path" ] || [ -n "$from_qube" ] || bad_usage "--path needs --from-qube"
if [ -n "$src_file" ] && [ -n "$from_qube$src_path" ]; then
	bad_usage "give either --file or --from-qube with --path, not both"
fi
if [ -z "$src_file" ]; then
	[ -n "$from_qube" ] || bad_usage "say where the kernel is: --from-qube QUBE --path PATH, or --file FILE"
	[ -n "$src_path" ] || bad_usage "--from-qube needs --path (the vmlinuz in that qube)"
fi
[ "$assume_exists" -eq 0 ] || [ "$dry_run" -eq 1 ] || bad_usage "--assume-exists only goes with --dry-run"

# Qubes' rule for qube names: a letter, then letters, digits, _ . -; 31 at most.
valid_qube() {
	[[ "$1" =~ ^[A-Za-z][A-Za-z0-9_.-]{0,30}$ ]]
}
valid_qube "$name" || bad_usage "--name '$name' is not a valid qube name"
valid_qube "$netvm" || bad_usage "--netvm '$netvm' is not a valid qube name"
[ -z "$from_qube" ] || valid_qube "$from_qube" || bad_usage "--from-qube '$from_qube' is not a valid qube name"
[ "$name" != "$netvm" ] || bad_usage "--name and --netvm are the same qube ($name)"
case " $LABELS " in
*" $label "*) ;;
*) bad_usage "--label '$label' is not one of: $LABELS" ;;
esac
[[ "$kernel" =~ ^[A-Za-z0-9][A-Za-z0-9_.+-]*$ ]] || bad_usage "--kernel '$kernel' is not a plain directory name"
if ! [[ "$memory" =~ ^[0-9]+$ ]] || [ "$memory" -lt 32 ]; then
	bad_usage "--memory '$memory' must be a number of MiB, 32 or more"
fi
if [ -n "$sha256" ]; then
	[[ "$sha256" =~ ^[0-9A-Fa-f]{64}$ ]] || bad_usage "--sha256 needs 64 hexadecimal digits, got '$sha256'"
	sha256=${sha256,,}
fi
# Qubes refuses longer kernelopts (core-admin's 512-character limit).
[ "${#kernelopts}" -le 512 ] || bad_usage "--kernelopts is longer than the 512 characters Qubes accepts"
[[ "$kernelopts" != *$'\n'* ]] || bad_usage "--kernelopts must be one line"

# ---- the environment --------------------------------------------------------

if [ "$dry_run" -eq 0 ]; then
	for tool in qvm-check qvm-create qvm-prefs qvm-features sha256sum install; do
		command -v "$tool" >/dev/null 2>&1 ||
			die "$tool not found: run this in dom0 (or try --dry-run to see the commands)"
	done
	[ -z "$from_qube" ] || command -v qvm-run >/dev/null 2>&1 || die "qvm-run not found: run this in dom0"
fi

# The kernel directory is root's: use sudo unless we may write there.
sudo=()
probe=$KERNELS_DIR/$kernel
while [ ! -e "$probe" ] && [ "$probe" != / ]; do
	probe=$(dirname "$probe")
done
if [ "$(id -u)" -ne 0 ] && [ ! -w "$probe" ]; then
	sudo=(sudo)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/install-dom0.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

dir=$KERNELS_DIR/$kernel

# ---- 1. the kernel ------------------------------------------------------------

echo "== kernel -> $dir/vmlinuz"
if [ -n "$src_file" ]; then
	[ -f "$src_file" ] || die "--file $src_file: no such file"
	kfile=$src_file
else
	kfile=$work/vmlinuz
	quoted=$(printf '%q' "$src_path")
	remote="cat -- $quoted"
	if [[ "$remote" == *"'"* ]]; then
		shown=$(printf '%q' "$remote")
	else
		shown="'$remote'"
	fi
	printf '+ qvm-run --pass-io --no-gui %q %s > %q\n' "$from_qube" "$shown" "$kfile"
	if [ "$dry_run" -eq 0 ]; then
		qvm-run --pass-io --no-gui "$from_qube" "$remote" >"$kfile" ||
			die "could not read $src_path in $from_qube (is the path right? did 'make vmlinuz' finish?)"
	fi
fi

if [ "$dry_run" -eq 1 ] && [ -z "$src_file" ]; then
	echo "# dry run: the kernel from $from_qube is not fetched, so neither its ELF header nor its SHA-256 is checked"
else
	[ -s "$kfile" ] || die "the kernel is empty: $kfile"
	magic=$(head -c 4 -- "$kfile" | od -An -tx1 | tr -d ' \n')
	[ "$magic" = 7f454c46 ] || die "the kernel is not an ELF image (first bytes $magic): did you copy the right file?"
	actual=$(sha256sum -- "$kfile" | cut -d' ' -f1)
	echo "SHA-256 $actual ($(stat -c %s -- "$kfile") bytes)"
	if [ -n "$sha256" ]; then
		[ "$actual" = "$sha256" ] ||
			die "SHA-256 mismatch: expected $sha256, the kernel has $actual; nothing was installed"
		echo "SHA-256 matches --sha256"
	else
		echo "(no --sha256 given: compare the value above with the one 'make vmlinuz' printed)"
	fi
fi

run "${sudo[@]}" mkdir -p -- "$dir"
# Keep the kernel being replaced, for a rollback (docs/install.md).
if [ -f "$dir/vmlinuz" ] && { [ "$dry_run" -eq 1 ] || ! cmp -s -- "$kfile" "$dir/vmlinuz"; }; then
	run "${sudo[@]}" cp -p -- "$dir/vmlinuz" "$dir/vmlinuz.previous"
fi
# Copy under a temporary name, then rename: a qube starting meanwhile sees
# the old kernel or the new one, never half of one.
run "${sudo[@]}" install -m 0644 -- "$kfile" "$dir/vmlinuz.new"
run "${sudo[@]}" mv -f -- "$dir/vmlinuz.new" "$dir/vmlinuz"
if [ "$initramfs" -eq 1 ] && [ ! -e "$dir/initramfs" ]; then
	# An empty gzip stream: Qubes 4.2.0 refuses a kernel directory without
	# an initramfs; later 4.2 updates accept one, and our kernel ignores it.
	printf '+ gzip -n9 < /dev/null > %q\n' "$work/initramfs"
	if [ "$dry_run" -eq 0 ]; then
		gzip -n9 </dev/null >"$work/initramfs"
	fi
	run "${sudo[@]}" install -m 0644 -- "$work/initramfs" "$dir/initramfs"
fi

# ---- 2. the qube ----------------------------------------------------------------

features() {
	run qvm-features "$name" qubes-firewall 1
	run qvm-features "$name" no-default-kernelopts 1
	run qvm-features "$name" skip-update 1
}

exists=1
[ "$assume_exists" -eq 1 ] && exists=0
if query "$exists" qvm-check --quiet "$name"; then
	echo "== $name exists: updating its kernel and settings"
	# `--` before the qube: kernelopts may start with a dash.
	run qvm-prefs -- "$name" kernel "$kernel"
	run qvm-prefs -- "$name" kernelopts "$kernelopts"
	run qvm-prefs -- "$name" virt_mode pvh
	run qvm-prefs -- "$name" vcpus 1
	run qvm-prefs -- "$name" memory "$memory"
	run qvm-prefs -- "$name" maxmem "$memory"
	run qvm-prefs -- "$name" provides_network True
	run qvm-prefs -- "$name" netvm "$netvm"
	run qvm-prefs -- "$name" audiovm ""
	run qvm-prefs -- "$name" label "$label"
	features
	running=1
	[ "$dry_run" -eq 1 ] && [ "$restart" -eq 1 ] && running=0
	if query "$running" qvm-check --quiet --running "$name"; then
		if [ "$restart" -eq 1 ]; then
			# --force: a net qube with running clients refuses a plain
			# shutdown; Qubes re-attaches the clients when it starts.
			run qvm-shutdown --wait --force "$name"
			run qvm-start "$name"
		else
			echo "note: $name is running the old kernel; restart it to use the new one:"
			echo "  qvm-shutdown --wait --force $name && qvm-start $name    (or run again with --restart)"
		fi
	fi
else
	query 0 qvm-check --quiet "$netvm" ||
		die "--netvm $netvm does not exist (qvm-ls lists the qubes)"
	echo "== creating $name"
	run qvm-create \
		--property kernel="$kernel" \
		--property kernelopts="$kernelopts" \
		--property memory="$memory" \
		--property maxmem="$memory" \
		--property netvm="$netvm" \
		--property provides_network=True \
		--property vcpus=1 \
		--property virt_mode=pvh \
		--property audiovm= \
		--label="$label" \
		--class StandaloneVM \
		"$name"
	features
fi

if [ "$default_netvm" -eq 1 ]; then
	run qubes-prefs default_netvm "$name"
fi

echo "== done. Next: connect a qube with 'qvm-prefs <qube> netvm $name'; read the firewall's log with"
echo "   sudo tail -f /var/log/xen/console/guest-$name.log"
