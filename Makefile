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
DEB_PACKAGES := libxen-dev gcc g++ pkg-config

# Seconds each fuzz target runs in `make fuzz-smoke`.
FUZZ_SECONDS ?= 20
FUZZ_RSS_MB ?= 2048
FUZZ_DIR := fuzz

banner = printf '\n==== %s ====\n' "$(1)"

.PHONY: help test deps fmt fmt-check clippy unit test-rust fuzz-smoke lab build doc clean

help:
	@echo "make test        everything CI runs: deps fmt-check clippy unit fuzz-smoke"
	@echo "make lab         cargo run --release --bin lab"
	@echo "make deps        install missing Debian packages (as root), else say which"
	@echo "make fmt-check   cargo fmt --check (workspace and fuzz/)"
	@echo "make fmt         cargo fmt (workspace and fuzz/)"
	@echo "make clippy      clippy with -D warnings (all features, default features, no-std libs)"
	@echo "make unit        cargo test --workspace --all-features (alias: test-rust)"
	@echo "make fuzz-smoke  every fuzz target for $(FUZZ_SECONDS)s (installs cargo-fuzz if missing)"
	@echo "make build       cargo build --workspace --all-targets --all-features"
	@echo "make doc         cargo doc --workspace --no-deps with warnings as errors"
	@echo "make clean       cargo clean (workspace and fuzz/)"

test: deps fmt-check clippy unit fuzz-smoke
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
	@$(call banner,clippy: all features)
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	$(call banner,clippy: default features)
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(call banner,clippy: libraries without the simulator)
	$(CARGO) clippy --workspace --exclude integration-tests --lib -- -D warnings

# Plain `cargo test` (not nextest): CI reads its closing lines.
unit test-rust:
	@$(call banner,unit: cargo test --workspace --all-features)
	$(CARGO) test --workspace --all-features

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

build:
	$(CARGO) build --workspace --all-targets --all-features

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --all-features --no-deps

clean:
	$(CARGO) clean
	if [ -f $(FUZZ_DIR)/Cargo.toml ]; then
	  $(CARGO) clean --manifest-path $(FUZZ_DIR)/Cargo.toml
	fi
