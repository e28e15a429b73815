# Builds, checks and installs rasen. `make test` is what CI runs (.ci/run).

CARGO      ?= cargo
PREFIX     ?= /usr/local
MUSL       := x86_64-unknown-linux-musl
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN        := $(TARGET_DIR)/release/rasen
STATIC_BIN := $(TARGET_DIR)/$(MUSL)/release/rasen

.PHONY: build static test lint install clean demo bench fuzz soak

build:
	$(CARGO) build --release

# A fully static binary (musl) to copy onto any Linux box. Fails unless
# ldd confirms that it is static.
static:
	@rustup target list --installed | grep -qx '$(MUSL)' || rustup target add $(MUSL)
	$(CARGO) build --release --target $(MUSL)
	@echo "static binary: $(STATIC_BIN)"
	@if command -v file >/dev/null; then file $(STATIC_BIN); fi
	@ldd $(STATIC_BIN) 2>&1 | grep -Eq 'not a dynamic executable|statically linked' \
		|| { echo "error: $(STATIC_BIN) is not static:"; ldd $(STATIC_BIN); exit 1; }
	@echo "ldd: statically linked"

test: lint
	$(CARGO) test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The whole daemon story (run --background, status, logs, stop, resume) in a
# temporary repository, with the scripted agent (no Claude, no network).
demo: build
	RASEN=$(abspath $(BIN)) sh tests/demo.sh

# Performance figures (printed, never asserted).
bench: build
	sh tests/bench.sh

# The mutation fuzzer (src/fuzz/) at length: RASEN_FUZZ_CASES cases per
# reader of untrusted text (`make test` runs 2000); RASEN_FUZZ_SEED=S
# replays a run. Optimized, but with overflow checks and debug assertions
# as in `cargo test`, so that an overflow is a finding. Prints, per
# reader, the cases run and the seed.
RASEN_FUZZ_CASES ?= 1000000
fuzz:
	RASEN_FUZZ_CASES=$(RASEN_FUZZ_CASES) \
	CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
		$(CARGO) test --release --bin rasen fuzz:: -- --nocapture

# The crash test (tests/integration/crash.rs) at length, on the release
# binary: RASEN_CRASH_KILLS kill -9s of the daemon at random moments
# (`make test` makes 100), a plan of as many subtasks; RASEN_CRASH_SEED=S
# replays the moments. Prints the kills survived, where they landed, the seed.
RASEN_CRASH_KILLS ?= 1000
soak:
	RASEN_CRASH_KILLS=$(RASEN_CRASH_KILLS) $(CARGO) test --release --test integration crash:: -- --nocapture

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/rasen

clean:
	$(CARGO) clean
