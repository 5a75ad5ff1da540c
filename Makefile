# psentinel - build, install, test.
#
#   make && sudo make install        build, then install under PREFIX
#   make install DESTDIR=pkg/        staged install for packaging
#   make install BIN=target/debug/psentinel   install another build (the tests do)
#   PREFIX=/usr/local: units and generator are rewritten to run $(PREFIX)/bin/psentinel
#   make test                        what CI runs (.ci/run)

PREFIX     ?= /usr
SYSCONFDIR ?= /etc
CARGO      ?= cargo
BIN        := target/release/psentinel

UNITDIR     := $(PREFIX)/lib/systemd/system
GENERATORDIR:= $(PREFIX)/lib/systemd/system-generators
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
DBUSDIR     := $(PREFIX)/share/dbus-1/system.d

# Everything the test suite needs from Debian: real HAProxy and dbus-daemon
# as peers, sysbox (systemd-nspawn + debootstrap) for a real systemd,
# prometheus (promtool and the server) to parse and scrape /metrics.
APT_PACKAGES := haproxy dbus systemd systemd-container debootstrap debian-archive-keyring \
                jq socat curl libglib2.0-bin prometheus
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build install deps check test run-example

all: build

build:
	$(CARGO) build --release --locked

# Does not build: `make` as a user first, `make install` as root after.
# Never overwrites an operator's /etc/psentinel/psentinel.cfg. A live install
# (no DESTDIR) on a systemd host also creates the user and /run/psentinel, as
# a package's postinst would; a staged install leaves that to the package.
install:
	@test -x $(BIN) || { echo "$(BIN) missing: run 'make' first" >&2; exit 1; }
	install -Dm0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/psentinel
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR)
	sed 's|/usr/bin/psentinel|$(PREFIX)/bin/psentinel|g' systemd/psentinel.service >$(DESTDIR)$(UNITDIR)/psentinel.service
	install -m0644 systemd/psentinel.socket $(DESTDIR)$(UNITDIR)/psentinel.socket
	sed 's|/usr/bin/psentinel|$(PREFIX)/bin/psentinel|g' systemd/psentinel-generator >$(DESTDIR)$(GENERATORDIR)/psentinel-generator
	chmod 0644 $(DESTDIR)$(UNITDIR)/psentinel.service
	chmod 0755 $(DESTDIR)$(GENERATORDIR)/psentinel-generator
	install -Dm0644 systemd/sysusers.d/psentinel.conf $(DESTDIR)$(SYSUSERSDIR)/psentinel.conf
	install -Dm0644 systemd/tmpfiles.d/psentinel.conf $(DESTDIR)$(TMPFILESDIR)/psentinel.conf
	install -Dm0644 dbus/org.psentinel.PSentinel1.conf $(DESTDIR)$(DBUSDIR)/org.psentinel.PSentinel1.conf
	test -e $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.cfg || \
		install -Dm0644 examples/psentinel.cfg $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.cfg
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers psentinel.conf && \
		systemd-tmpfiles --create psentinel.conf && \
		systemctl daemon-reload; \
	fi

# Idempotent and quiet when all is there: apt-get update only if something
# is missing; nextest only if `cargo nextest` does not answer.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@$(CARGO) nextest --version >/dev/null 2>&1 || \
		$(CARGO) install cargo-nextest --locked || \
		echo "warning: cargo-nextest not installable; 'make test' will use cargo test" >&2

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

test: deps check
	$(CARGO) build --locked
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --locked --no-fail-fast"; \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		echo "$(CARGO) test --locked --no-fail-fast"; \
		$(CARGO) test --locked --no-fail-fast; \
	fi

# Foreground, debug log, no root: pid, socket and state under target/run.
run-example:
	mkdir -p target/run
	$(CARGO) run -- -D -f examples/psentinel-dev.cfg
