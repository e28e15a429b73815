# Builds, checks and installs rasen. `make test` is what CI runs (.ci/run).

CARGO      ?= cargo
PREFIX     ?= /usr/local
MUSL       := x86_64-unknown-linux-musl
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN        := $(TARGET_DIR)/release/rasen
STATIC_BIN := $(TARGET_DIR)/$(MUSL)/release/rasen

.PHONY: build static test lint install clean demo bench

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

# The daemon story (README.md, "Daemon mode") in a temporary repository,
# with the scripted agent (no Claude, no network).
demo: build
	RASEN=$(abspath $(BIN)) sh tests/demo.sh

# Performance figures (printed, never asserted).
bench: build
	sh tests/bench.sh

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/rasen

clean:
	$(CARGO) clean
