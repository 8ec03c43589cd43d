# Build and test entry points. `make test` is what CI runs (through .ci/run).
#
# Every recipe runs in one bash with -euo pipefail, so the first failing
# command fails its target and `make test` stops with a non-zero status.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
# Sections must run in order and their output must not interleave.
.NOTPARALLEL:
.DEFAULT_GOAL := help

CARGO ?= cargo

# Debian packages the build and the tests need:
#   libxen-dev  Xen public headers (ABI layout test) and libxenvchan.a
#               (our vchan against the real C library)
#   gcc         C compiler for those tests
#   g++         libFuzzer (built by libfuzzer-sys for `cargo fuzz`) is C++
#   pkg-config  locating the Xen libraries
#   qemu-system-x86  boots the PVH kernel (smoke test: banner, no Xen, stop)
#   binutils    readelf/nm for inspecting the kernel image
#   iperf3 dnsmasq tcpdump iputils-ping iproute2 python3
#               the hostfw real-peer tests (servers and tools in network
#               namespaces); nftables: the Linux baseline of bench-hostfw
DEB_PACKAGES := libxen-dev gcc g++ pkg-config qemu-system-x86 binutils iperf3 dnsmasq nftables tcpdump iputils-ping iproute2 python3

# Host builds (lab, tests, simulator). `--all-features` is not used: the
# `pvh` feature (the freestanding kernel runtime) excludes `std`.
HOST_FEATURES := --features xen/sim,qubesdb/sim

# The unikernel: built for the host triple as no_std/no_main with its own
# linker script (firewall/build.rs, firewall/vmlinuz.ld). The explicit
# --target keeps these flags off build scripts and proc macros. The image
# is reproducible: the path remapping keeps it independent of where the
# sources, $HOME and cargo's crate cache are (rustc applies the last
# matching prefix, so the most specific comes last), the linker writes no
# build-id, and nothing else records the time or the machine.
KERNEL_TARGET := x86_64-unknown-linux-gnu
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
KERNEL_RUSTFLAGS := -C no-redzone=yes -C relocation-model=static --remap-path-prefix=$(HOME)=/home --remap-path-prefix=$(CARGO_HOME_DIR)=/cargo --remap-path-prefix=$(CURDIR)=/src
KERNEL_CARGO = RUSTFLAGS="$(KERNEL_RUSTFLAGS)" $(CARGO)
KERNEL_ARGS := -p firewall --bin vmlinuz --no-default-features --features pvh --target $(KERNEL_TARGET)
KERNEL_BUILT := target/$(KERNEL_TARGET)/kernel/vmlinuz
VMLINUZ := dist/mirage-firewall/vmlinuz
# kernel-check builds the kernel a second time here and compares the bytes.
KERNEL_REPRO_DIR := target/repro
# The image's expected SHA-256 (`make vmlinuz-sha` rewrites it).
VMLINUZ_SHA := tests/kernel/vmlinuz.sha256
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

# Seconds each fuzz target runs in `make fuzz-smoke`.
FUZZ_SECONDS ?= 20
FUZZ_RSS_MB ?= 2048
FUZZ_DIR := fuzz

banner = printf '\n==== %s ====\n' "$(1)"

# hostfw (the engine on Linux TAP devices): its own feature set, built
# only for its tests and benchmark.
HOSTFW_ARGS := -p firewall --no-default-features --features hostfw --bin hostfw
HOSTFW_BIN := target/release/hostfw

.PHONY: hostfw hostfw-test bench-hostfw help test deps fmt fmt-check clippy unit test-rust install-check xen-lib-check vif-release bench bench-memory fuzz-smoke lab build doc clean vmlinuz vmlinuz-sha kernel-check xen-boot xen-test

help:
	@echo "make test        deps fmt-check clippy unit install-check xen-lib-check vif-release hostfw-test kernel-check fuzz-smoke"
	@echo "make lab         cargo run --release --bin lab"
	@echo "make deps        install missing Debian packages (as root), else say which"
	@echo "make fmt-check   cargo fmt --check (workspace and fuzz/)"
	@echo "make fmt         cargo fmt (workspace and fuzz/)"
	@echo "make clippy      clippy with -D warnings (all features, default features, no-std libs)"
	@echo "make unit        cargo test --workspace with the simulator (alias: test-rust)"
	@echo "make vmlinuz     build $(VMLINUZ) (the PVH unikernel) and print its size and SHA-256"
	@echo "make kernel-check static checks, QEMU (TCG) PVH boots (plain and W^X self-tests), reproducibility, SHA-256"
	@echo "make vmlinuz-sha write the image's SHA-256 to $(VMLINUZ_SHA) (after an intended kernel change)"
	@echo "make xen-boot    boot $(VMLINUZ) as a PVH domU on real Xen 4.17 under QEMU TCG (tests/xen)"
	@echo "make xen-test    the firewall scenario on real Xen: $(VMLINUZ) between a dom0 uplink and a Linux client (tests/xen/scenario.sh)"
	@echo "make vif-release the vif pair matrix (8M frames) and hostile-client proptest, release build"
	@echo "make bench       the netfront -> netback and whole-firewall benchmarks on xen::sim"
	@echo "make bench-memory the firewall's heap with 50 clients and 20,000 flows vs a 32 MiB VM (xen::sim)"
	@echo "make install-check the dom0 install script: dry runs checked (tests/install), shellcheck if installed"
	@echo "make xen-lib-check the xen-test scenario's recovery rules against stubs of xl (no Xen, seconds)"
	@echo "make hostfw-test the hostfw real-peer tests: Linux namespaces, iperf3, dnsmasq, tcpdump through hostfw (root)"
	@echo "make bench-hostfw iperf3 through hostfw and through Linux forwarding + nftables; CSV and PNG in docs/perf/"
	@echo "make fuzz-smoke  every fuzz target for $(FUZZ_SECONDS)s (installs cargo-fuzz if missing)"
	@echo "make build       cargo build --workspace --all-targets --all-features"
	@echo "make doc         cargo doc --workspace --no-deps with warnings as errors"
	@echo "make clean       cargo clean (workspace and fuzz/)"

test: deps fmt-check clippy unit install-check xen-lib-check vif-release hostfw-test kernel-check fuzz-smoke
	@$(call banner,make test: all passed)

deps:
	@$(call banner,deps: Debian packages)
	if ! command -v dpkg-query >/dev/null 2>&1; then
	  echo "not a Debian system: make sure the equivalents of these are installed: $(DEB_PACKAGES)"
	  exit 0
	fi
	missing=""
	for pkg in $(DEB_PACKAGES); do
	  if ! dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed'; then
	    missing="$$missing $$pkg"
	  fi
	done
	if [ -z "$$missing" ]; then
	  echo "all present: $(DEB_PACKAGES)"
	  exit 0
	fi
	echo "missing:$$missing"
	if [ "$$(id -u)" -ne 0 ]; then
	  echo "error: not root, so not installing. Run as root, or first:" >&2
	  echo "  sudo apt-get install -y$$missing" >&2
	  exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends $$missing

fmt-check:
	@$(call banner,fmt-check)
	$(CARGO) fmt --all -- --check
	if [ -f $(FUZZ_DIR)/Cargo.toml ]; then
	  $(CARGO) fmt --all --manifest-path $(FUZZ_DIR)/Cargo.toml -- --check
	fi
	echo "formatting ok"

fmt:
	@$(call banner,fmt)
	$(CARGO) fmt --all
	if [ -f $(FUZZ_DIR)/Cargo.toml ]; then
	  $(CARGO) fmt --all --manifest-path $(FUZZ_DIR)/Cargo.toml
	fi

# Three configurations: everything (simulator and test code), the plain
# command from the issue (default features), and the libraries alone with
# default features, i.e. without the std-only simulator that the
# integration-tests crate switches on (the configuration the unikernel uses).
clippy:
	@$(call banner,clippy: host features (simulator))
	$(CARGO) clippy --workspace --all-targets $(HOST_FEATURES) -- -D warnings
	$(call banner,clippy: default features)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(call banner,clippy: libraries without the simulator)
	$(CARGO) clippy --workspace --exclude integration-tests --lib -- -D warnings
	$(call banner,clippy: hostfw)
	$(CARGO) clippy -p firewall --no-default-features --features hostfw --all-targets -- -D warnings
	$(call banner,clippy: the unikernel)
	$(KERNEL_CARGO) clippy --profile kernel $(KERNEL_ARGS) -- -D warnings

# Plain `cargo test` (not nextest): CI reads its closing lines.
unit test-rust:
	@$(call banner,unit: cargo test --workspace $(HOST_FEATURES))
	$(CARGO) test --workspace $(HOST_FEATURES)

# The vif pair matrix at full size (one million frames per offload
# combination) and the randomized hostile client need an optimised build;
# the workspace run above does the same tests with small counts.
vif-release:
	@$(call banner,vif-release: netfront/netback pair matrix, hostile client and end-to-end firewall tests, release build)
	$(CARGO) test --release -p integration-tests --test vif_pair --test hostile
	$(CARGO) test --release -p integration-tests --test e2e -- --test-threads=2

# The netfront -> netback benchmark (figures for the issue notes; not a test).
bench:
	@$(call banner,bench: vif on xen::sim)
	$(CARGO) bench -p integration-tests --bench vif
	$(call banner,bench: the whole firewall on xen::sim)
	$(CARGO) bench -p integration-tests --bench firewall

# The firewall's memory in a 32 MiB VM: heap and guest pages with the PVH
# allocator settings, 50 clients, 20,000 flows (figures; not a test). The
# image gives the end of the kernel, where the PVH heap starts.
bench-memory: vmlinuz
	@$(call banner,bench-memory: the firewall's heap on xen::sim vs a 32 MiB VM)
	$(CARGO) bench -p integration-tests --bench memory -- --image $(CURDIR)/$(VMLINUZ)

# The dom0 install script (docs/install-dom0.sh), run with --dry-run on a
# fake kernel: printed commands, argument errors, SHA-256 checks. shellcheck
# runs too when it is installed (it is not required).
# The scenario's decisions (when a Linux client that triple-faulted under TCG
# is re-created, when a probe wait fails) on the host, with xl stubbed.
xen-lib-check:
	@$(call banner,xen-lib-check: tests/xen/scenario-lib.sh against stubs)
	tests/xen/scenario-lib-test.sh

install-check:
	@$(call banner,install-check: docs/install-dom0.sh dry runs)
	tests/install/dry-run.sh docs/install-dom0.sh
	if command -v shellcheck >/dev/null 2>&1; then
	  shellcheck docs/install-dom0.sh tests/install/dry-run.sh
	  echo "shellcheck: clean"
	else
	  echo "shellcheck not installed: skipped"
	fi

hostfw:
	$(CARGO) build --release $(HOSTFW_ARGS)

# Real Linux peers through hostfw (root: namespaces and TAP devices).
# Bounded: every step has a timeout, and the whole run has one.
hostfw-test: hostfw
	@$(call banner,hostfw-test: real Linux peers through hostfw)
	timeout 300 tests/hostfw/run.sh

# Not a test: figures for docs/perf/ (hostfw against Linux forwarding).
bench-hostfw: hostfw
	@$(call banner,bench-hostfw: iperf3 through hostfw and through Linux forwarding)
	timeout 900 tests/hostfw/bench.sh

# cargo-fuzz on stable works with --sanitizer none (no -Z flags are passed).
fuzz-smoke:
	@$(call banner,fuzz-smoke: $(FUZZ_SECONDS)s per target)
	if [ ! -f $(FUZZ_DIR)/Cargo.toml ] || ! compgen -G '$(FUZZ_DIR)/fuzz_targets/*.rs' >/dev/null; then
	  echo "no fuzz targets in $(FUZZ_DIR)/ yet: skipping"
	  exit 0
	fi
	if ! $(CARGO) fuzz --version >/dev/null 2>&1; then
	  echo "cargo-fuzz not found: installing it"
	  $(CARGO) install cargo-fuzz --locked
	fi
	$(CARGO) fuzz --version
	cd $(FUZZ_DIR)
	targets="$$($(CARGO) fuzz list)"
	if [ -z "$$targets" ]; then
	  echo "cargo fuzz list found no targets: skipping"
	  exit 0
	fi
	for target in $$targets; do
	  $(call banner,fuzz: $$target)
	  $(CARGO) fuzz run "$$target" --sanitizer none -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_MB)
	done
	echo "fuzz-smoke: all targets ran $(FUZZ_SECONDS)s without a crash"

lab:
	$(CARGO) run --release --bin lab

vmlinuz:
	@$(call banner,vmlinuz)
	$(KERNEL_CARGO) build --profile kernel $(KERNEL_ARGS)
	mkdir -p $(dir $(VMLINUZ))
	cp $(KERNEL_BUILT) $(VMLINUZ)
	echo "$(VMLINUZ): $$(stat -c %s $(VMLINUZ)) bytes"
	sha256sum $(VMLINUZ)

# The kernel on real Xen (Debian's Xen 4.17 + Linux dom0 under QEMU TCG):
# builds or reuses the dom0 image (outside the repo), boots, creates the
# firewall domU and waits for its memory line on the PV console (the console,
# the banner and logging work; with no QubesDB in dom0 it would go on to wait
# for one, then crash: `make xen-test` runs the whole firewall).
xen-boot: vmlinuz
	@$(call banner,xen-boot: $(VMLINUZ) on Xen 4.17 under QEMU TCG)
	tests/xen/build-image.sh
	tests/xen/run-guest.sh $(VMLINUZ) --name firewall --expect "memory: heap" --timeout 60 --no-build

# The firewall scenario on real Xen: dom0 is sys-net, the internet and QubesDB
# (tests/xen/qubesdb-dom0), our kernel the firewall VM, a Linux PVH domU its
# client; prints RESULT lines and fails if any check fails.
xen-test: vmlinuz
	@$(call banner,xen-test: the firewall scenario on Xen 4.17 under QEMU TCG)
	tests/xen/scenario.sh

# After an intended change to the kernel (its code, Cargo.lock or the
# toolchain all change the bytes): record the new digest and commit it.
vmlinuz-sha: vmlinuz
	@sha256sum $(VMLINUZ) | cut -d' ' -f1 > $(VMLINUZ_SHA)
	echo "$(VMLINUZ_SHA): $$(cat $(VMLINUZ_SHA)) (rustc $$(rustc --version | cut -d' ' -f2)); commit it with the change"

kernel-check: vmlinuz
	@$(call banner,kernel-check: static image checks)
	python3 tests/kernel/check_image.py $(VMLINUZ) --forbid "$(CURDIR)" --forbid "$(HOME)" --forbid "$(CARGO_HOME_DIR)"
	$(call banner,kernel-check: QEMU TCG PVH boots: plain and the W^X/guard self-tests)
	tests/kernel/qemu-smoke.sh $(VMLINUZ) $(VERSION)
	$(call banner,kernel-check: reproducible: a second build in $(KERNEL_REPRO_DIR))
	$(KERNEL_CARGO) build --profile kernel $(KERNEL_ARGS) --target-dir $(KERNEL_REPRO_DIR)
	second=$(KERNEL_REPRO_DIR)/$(KERNEL_TARGET)/kernel/vmlinuz
	if ! cmp $(VMLINUZ) "$$second"; then
	  echo "FAIL: two builds of the same sources differ: $(VMLINUZ) and $$second" >&2
	  echo "      (something machine- or time-specific leaks into the image; compare them with 'cmp -l' or diffoscope)" >&2
	  exit 1
	fi
	echo "ok   $(VMLINUZ) and $$second are identical ($$(stat -c %s $(VMLINUZ)) bytes)"
	$(call banner,kernel-check: SHA-256 against $(VMLINUZ_SHA))
	have=$$(sha256sum $(VMLINUZ) | cut -d' ' -f1)
	want=$$(tr -d '[:space:]' < $(VMLINUZ_SHA) 2>/dev/null || echo "(no such file)")
	if [ "$$have" != "$$want" ]; then
	  echo "FAIL: $(VMLINUZ) has SHA-256 $$have," >&2
	  echo "      but $(VMLINUZ_SHA) expects $$want." >&2
	  echo "      Every change to the kernel's code, to Cargo.lock or to the toolchain changes the image" >&2
	  echo "      (this one was built with $$(rustc --version))." >&2
	  echo "      If the change is intended: run 'make vmlinuz-sha' and commit $(VMLINUZ_SHA) with it." >&2
	  exit 1
	fi
	echo "ok   SHA-256 $$have matches $(VMLINUZ_SHA)"

build:
	$(CARGO) build --workspace --all-targets $(HOST_FEATURES)

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace $(HOST_FEATURES) --no-deps

clean:
	$(CARGO) clean
	if [ -f $(FUZZ_DIR)/Cargo.toml ]; then
	  $(CARGO) clean --manifest-path $(FUZZ_DIR)/Cargo.toml
	fi
