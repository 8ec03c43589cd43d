#!/bin/bash
# Checks docs/install-dom0.sh without Qubes: --dry-run on a fake kernel of
# known SHA-256, then the commands it prints (the kernel path, qvm-create
# with every property, the features, the update of an existing qube), its
# refusal of bad arguments with a clear message, and of a wrong --sha256.
#
#   tests/install/dry-run.sh [path/to/install-dom0.sh]

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
script=${1:-$here/../../docs/install-dom0.sh}
[ -f "$script" ] || { echo "no script at $script" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

# A fake kernel: ELF magic, then text. Its SHA-256 is computed here and
# checked against the script's report.
kernel=$work/vmlinuz
printf '\177ELF\002\001\001fake firewall kernel for the install dry run\n' >"$kernel"
sha=$(sha256sum "$kernel" | cut -d' ' -f1)
kdir=/var/lib/qubes/vm-kernels/mirage-firewall

passed=0
failed=0
ok() {
	passed=$((passed + 1))
	echo "ok   $1"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL $1" >&2
}

# expect_line NAME OUTPUT REGEX: some line of OUTPUT matches REGEX (ERE).
expect_line() {
	if grep -Eq -- "$3" <<<"$2"; then ok "$1"; else fail "$1: no line matching /$3/"; fi
}
expect_no_line() {
	if grep -Eq -- "$3" <<<"$2"; then fail "$1: unexpected line matching /$3/"; else ok "$1"; fi
}

# run_ok NAME ARGS...: the script succeeds; its output is in $out.
run_ok() {
	local what=$1
	shift
	if out=$(bash "$script" "$@" 2>&1); then
		ok "$what: exit 0"
	else
		fail "$what: exit $?"
		printf '%s\n' "$out" >&2
	fi
}

# run_fails NAME REGEX ARGS...: the script fails and says REGEX on stderr,
# having printed no command.
run_fails() {
	local what=$1 msg=$2 err rc=0
	shift 2
	err=$(bash "$script" "$@" 2>&1 >/dev/null) || rc=$?
	if [ "$rc" -eq 0 ]; then
		fail "$what: succeeded"
		return
	fi
	if grep -Eq -- "$msg" <<<"$err"; then
		ok "$what: refused ($rc): $(head -n1 <<<"$err")"
	else
		fail "$what: refused ($rc) without /$msg/: $err"
	fi
	if bash "$script" "$@" 2>/dev/null | grep -q '^+ '; then
		fail "$what: printed commands before refusing"
	fi
}

# The command lines may need sudo (not root); allow it.
S='^\+ (sudo )?'

# ---- a new qube --------------------------------------------------------------
run_ok "new qube" --file "$kernel" --sha256 "$sha" --dry-run
new=$out
expect_line "SHA-256 reported" "$new" "^SHA-256 $sha "
expect_line "SHA-256 matched" "$new" "^SHA-256 matches"
expect_line "kernel directory" "$new" "${S}mkdir -p -- $kdir\$"
expect_line "kernel copied" "$new" "${S}install -m 0644 -- $kernel $kdir/vmlinuz.new\$"
expect_line "kernel renamed into place" "$new" "${S}mv -f -- $kdir/vmlinuz.new $kdir/vmlinuz\$"
expect_line "empty initramfs" "$new" "${S}install -m 0644 -- .*/initramfs $kdir/initramfs\$"
expect_line "asks whether the qube exists" "$new" "^\+ qvm-check --quiet sys-mirage-firewall "
expect_line "qvm-create with every property" "$new" \
	"^\+ qvm-create --property kernel=mirage-firewall --property kernelopts= --property memory=32 --property maxmem=32 --property netvm=sys-net --property provides_network=True --property vcpus=1 --property virt_mode=pvh --property audiovm= --label=green --class StandaloneVM sys-mirage-firewall\$"
for f in qubes-firewall no-default-kernelopts skip-update; do
	expect_line "feature $f" "$new" "^\+ qvm-features sys-mirage-firewall $f 1\$"
done
expect_no_line "no default netvm unasked" "$new" "qubes-prefs"
expect_no_line "no qvm-prefs for a new qube" "$new" "^\+ qvm-prefs"
if [ -e "$kdir/vmlinuz.new" ] || [ -e "$work/ran" ]; then fail "dry run wrote files"; else ok "dry run wrote nothing"; fi

# ---- other names, options, the default netvm ----------------------------------
run_ok "options" --file "$kernel" --dry-run --name fw2 --netvm sys-vpn --label orange \
	--kernel rust-fw --memory 48 --kernelopts '--ipv4=10.137.0.20 --ipv4-gw=10.137.0.1' \
	--default-netvm --no-initramfs
expect_line "options: qvm-create" "$out" \
	'^\+ qvm-create --property kernel=rust-fw --property kernelopts=--ipv4=10\.137\.0\.20\\ --ipv4-gw=10\.137\.0\.1 --property memory=48 --property maxmem=48 --property netvm=sys-vpn .*--label=orange --class StandaloneVM fw2$'
expect_line "options: kernel directory" "$out" "${S}mv -f -- /var/lib/qubes/vm-kernels/rust-fw/vmlinuz.new /var/lib/qubes/vm-kernels/rust-fw/vmlinuz\$"
expect_no_line "options: --no-initramfs" "$out" "initramfs"
expect_line "options: default netvm" "$out" '^\+ qubes-prefs default_netvm fw2$'
expect_line "options: features" "$out" '^\+ qvm-features fw2 skip-update 1$'

# ---- an existing qube: update, no create -------------------------------------
run_ok "existing qube" --file "$kernel" --dry-run --assume-exists --restart --kernelopts '-l debug'
expect_no_line "existing: no qvm-create" "$out" "qvm-create"
expect_line "existing: kernel" "$out" '^\+ qvm-prefs -- sys-mirage-firewall kernel mirage-firewall$'
expect_line "existing: kernelopts after --" "$out" "^\\+ qvm-prefs -- sys-mirage-firewall kernelopts -l\\\\ debug\$"
for p in "virt_mode pvh" "vcpus 1" "memory 32" "maxmem 32" "provides_network True" "netvm sys-net" "audiovm ''" "label green"; do
	expect_line "existing: $p" "$out" "^\\+ qvm-prefs -- sys-mirage-firewall $p\$"
done
expect_line "existing: features" "$out" '^\+ qvm-features sys-mirage-firewall no-default-kernelopts 1$'
expect_line "existing: restart" "$out" '^\+ qvm-shutdown --wait --force sys-mirage-firewall$'
expect_line "existing: start" "$out" '^\+ qvm-start sys-mirage-firewall$'

# ---- from a qube ---------------------------------------------------------------
run_ok "from a qube" --from-qube dev --path '/home/user/my fw/dist/mirage-firewall/vmlinuz' --dry-run
expect_line "qvm-run fetch" "$out" "^\+ qvm-run --pass-io --no-gui dev 'cat -- /home/user/my\\\\ fw/dist/mirage-firewall/vmlinuz' > "
expect_line "not verified in a dry run" "$out" "not fetched"

# ---- a wrong SHA-256 ------------------------------------------------------------
wrong=$(printf '%064d' 0)
run_fails "wrong --sha256" "SHA-256 mismatch: expected $wrong" --file "$kernel" --sha256 "$wrong" --dry-run
run_fails "wrong --sha256 (upper case)" "SHA-256 mismatch" --file "$kernel" --sha256 "${wrong//0/A}" --dry-run
# The right one in capitals is fine.
run_ok "SHA-256 in capitals" --file "$kernel" --sha256 "${sha^^}" --dry-run

# ---- bad arguments -----------------------------------------------------------------
printf 'not an elf\n' >"$work/text"
run_fails "no source" "say where the kernel is" --dry-run
run_fails "qube without path" "--from-qube needs --path" --from-qube dev --dry-run
run_fails "path without qube" "--path needs --from-qube" --path /x --dry-run
run_fails "both sources" "either --file or --from-qube" --file "$kernel" --from-qube dev --path /x --dry-run
run_fails "missing file" "no such file" --file "$work/none" --dry-run
run_fails "not an ELF" "not an ELF image" --file "$work/text" --dry-run
: >"$work/empty"
run_fails "empty file" "kernel is empty" --file "$work/empty" --dry-run
run_fails "short sha" "64 hexadecimal digits" --file "$kernel" --sha256 abc --dry-run
run_fails "bad name" "not a valid qube name" --file "$kernel" --name '1bad' --dry-run
run_fails "bad netvm" "not a valid qube name" --file "$kernel" --netvm 'sys net' --dry-run
run_fails "same qube" "are the same qube" --file "$kernel" --name sys-net --dry-run
run_fails "bad label" "not one of" --file "$kernel" --label pink --dry-run
run_fails "small memory" "32 or more" --file "$kernel" --memory 16 --dry-run
run_fails "bad kernel dir" "plain directory name" --file "$kernel" --kernel ../x --dry-run
run_fails "unknown option" "unknown argument: --bogus" --file "$kernel" --bogus --dry-run
run_fails "missing value" "option --name needs a value" --file "$kernel" --dry-run --name
run_fails "assume-exists alone" "only goes with --dry-run" --file "$kernel" --assume-exists
run_fails "long kernelopts" "512 characters" --file "$kernel" --kernelopts "$(printf '%0600d' 0)" --dry-run
if bash "$script" --help | grep -q -- '--from-qube QUBE'; then ok "--help"; else fail "--help"; fi

echo "install dry run: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
