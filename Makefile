# psentinel - build, install, test.
#
#   make && sudo make install        build, then install under PREFIX
#   make install DESTDIR=pkg/        staged install for packaging
#   make install BIN=target/debug/psentinel   install another build (the tests do)
#   PREFIX=/usr/local: units and generator are rewritten to run $(PREFIX)/bin/psentinel
#   make deb / make rpm              packages, built from a staged install
#   make lintian / make rpmlint      the packagers' checks on them
#   make test                        what CI runs (.ci/run)
#   make bench                       probe throughput, latency, CPU, footprint (bench/)
#   make fuzz                        each fuzz target for FUZZ_SECS seconds (fuzz/)

PREFIX     ?= /usr
SYSCONFDIR ?= /etc
CARGO      ?= cargo
BIN        := target/release/psentinel

UNITDIR     := $(PREFIX)/lib/systemd/system
GENERATORDIR:= $(PREFIX)/lib/systemd/system-generators
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
TMPFILESDIR := $(PREFIX)/lib/tmpfiles.d
DBUSDIR     := $(PREFIX)/share/dbus-1/system.d
POLKITDIR   := $(PREFIX)/share/polkit-1/actions
MANDIR      := $(PREFIX)/share/man
DOCDIR      := $(PREFIX)/share/doc/psentinel
# The example checks, executable, outside /usr/share/doc (which minimal images strip).
CHECKDIR    := $(PREFIX)/share/psentinel/checks
# Prometheus alerting rules, for `rule_files:` (docs/observability.md, "Alert rules").
RULESDIR    := $(PREFIX)/share/psentinel/prometheus
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
# Debian's zsh looks in vendor-completions, Fedora's in site-functions.
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR := $(PREFIX)/share/fish/vendor_completions.d

# Man page and completions, generated from the clap definition (examples/gen-assets.rs).
ASSETS  := target/assets
# Staged installs the packages are made from, one per format (they differ only in
# ZSHCOMPDIR). Asset lists in Cargo.toml point here.
PKGROOT := target/pkgroot
# README.md links to docs/*.md: the installed tree keeps that layout.
DOCS    := README.md
DOCPAGES:= $(wildcard docs/*.md)
# Written by hand; psentinel(8) is generated (ASSETS).
MAN5    := man/psentinel.cfg.5
EXAMPLES:= examples/psentinel.cfg examples/case1-ourapp.cfg examples/case2-pgpool.cfg \
           examples/polkit-deploy.rules
CHECKS  := $(wildcard examples/checks/*.sh)
HAPROXY_EXAMPLES := $(wildcard examples/haproxy/*.cfg)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
DEB     := target/debian/psentinel_$(VERSION)-1_$(shell dpkg --print-architecture 2>/dev/null).deb

# Everything the test suite needs from Debian: real HAProxy and dbus-daemon
# as peers (and Debian 13's HAProxy through tests/box/haproxy-trixie, debootstrap),
# tests/box/psbox for a real systemd (systemd-nspawn, debootstrap
# and the archive keyring to build its image, util-linux's nsenter, setsid and
# flock), prometheus (promtool and the server) to parse and scrape /metrics,
# lintian, rpm (rpmbuild) and rpmlint to build and check the packages,
# shellcheck for the harness scripts, python3 and ss (iproute2) for the
# control-socket hogs of tests/it/access.rs.
APT_PACKAGES := haproxy dbus systemd systemd-container debootstrap debian-archive-keyring \
                util-linux jq socat curl libglib2.0-bin prometheus lintian rpm rpmlint shellcheck \
                monitoring-plugins-basic monitoring-plugins-standard \
                python3-minimal iproute2
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all build assets install deb rpm lintian rpmlint deps check test run-example bench bench-deps fuzz

all: build assets

build:
	$(CARGO) build --release --locked

# Dev profile on purpose: it shares the test build's artifacts, and the example needs
# dev-dependencies (clap_mangen, clap_complete) the release binary does not carry.
assets:
	$(CARGO) run --locked --quiet --example gen-assets -- $(ASSETS)

# Does not build: `make` as a user first, `make install` as root after.
# Never overwrites an operator's /etc/psentinel/psentinel.cfg (or psentinel.d/README).
# A live install
# (no DESTDIR) on a systemd host also creates the user and /run/psentinel, as
# a package's postinst would; a staged install leaves that to the package.
install:
	@test -x $(BIN) || { echo "$(BIN) missing: run 'make' first" >&2; exit 1; }
	install -Dm0755 -s $(BIN) $(DESTDIR)$(PREFIX)/bin/psentinel
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR)
	sed 's|/usr/bin/psentinel|$(PREFIX)/bin/psentinel|g' systemd/psentinel.service >$(DESTDIR)$(UNITDIR)/psentinel.service
	install -m0644 systemd/psentinel.socket $(DESTDIR)$(UNITDIR)/psentinel.socket
	sed 's|/usr/bin/psentinel|$(PREFIX)/bin/psentinel|g' systemd/psentinel-drain@.service >$(DESTDIR)$(UNITDIR)/psentinel-drain@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/psentinel-drain@.service
	sed 's|/usr/bin/psentinel|$(PREFIX)/bin/psentinel|g' systemd/psentinel-generator >$(DESTDIR)$(GENERATORDIR)/psentinel-generator
	chmod 0644 $(DESTDIR)$(UNITDIR)/psentinel.service
	chmod 0755 $(DESTDIR)$(GENERATORDIR)/psentinel-generator
	install -Dm0644 systemd/sysusers.d/psentinel.conf $(DESTDIR)$(SYSUSERSDIR)/psentinel.conf
	install -Dm0644 systemd/tmpfiles.d/psentinel.conf $(DESTDIR)$(TMPFILESDIR)/psentinel.conf
	install -Dm0644 dbus/org.psentinel.PSentinel1.conf $(DESTDIR)$(DBUSDIR)/org.psentinel.PSentinel1.conf
	install -Dm0644 polkit/org.psentinel.PSentinel1.policy $(DESTDIR)$(POLKITDIR)/org.psentinel.PSentinel1.policy
	install -Dm0644 -t $(DESTDIR)$(DOCDIR) $(DOCS)
	install -Dm0644 -t $(DESTDIR)$(DOCDIR)/docs $(DOCPAGES)
	install -d $(DESTDIR)$(MANDIR)/man5
	gzip -9n < $(MAN5) > $(DESTDIR)$(MANDIR)/man5/psentinel.cfg.5.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man5/psentinel.cfg.5.gz
	install -Dm0644 -t $(DESTDIR)$(DOCDIR)/examples $(EXAMPLES)
	install -Dm0755 -t $(DESTDIR)$(CHECKDIR) $(CHECKS)
	install -Dm0644 examples/prometheus/psentinel-alerts.yml $(DESTDIR)$(RULESDIR)/psentinel-alerts.yml
	install -Dm0644 -t $(DESTDIR)$(DOCDIR)/examples/haproxy $(HAPROXY_EXAMPLES)
	@# Generated by `make` (assets); deb and rpm always make them first.
	if [ -f $(ASSETS)/psentinel.8 ]; then \
		install -d $(DESTDIR)$(MANDIR)/man8 && \
		gzip -9n < $(ASSETS)/psentinel.8 > $(DESTDIR)$(MANDIR)/man8/psentinel.8.gz && \
		chmod 0644 $(DESTDIR)$(MANDIR)/man8/psentinel.8.gz && \
		install -Dm0644 $(ASSETS)/completions/psentinel.bash $(DESTDIR)$(BASHCOMPDIR)/psentinel && \
		install -Dm0644 $(ASSETS)/completions/_psentinel $(DESTDIR)$(ZSHCOMPDIR)/_psentinel && \
		install -Dm0644 $(ASSETS)/completions/psentinel.fish $(DESTDIR)$(FISHCOMPDIR)/psentinel.fish; \
	else \
		echo "note: $(ASSETS) missing: no man page or completions installed (run 'make')" >&2; \
	fi
	test -e $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.cfg || \
		install -Dm0644 examples/psentinel.cfg $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.cfg
	@# The drop-in directory, with a README that says what goes there (and gives the .deb,
	@# which cannot ship an empty directory, a file to own it by).
	install -d $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.d
	test -e $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.d/README || \
		install -m0644 examples/psentinel.d/README $(DESTDIR)$(SYSCONFDIR)/psentinel/psentinel.d/README
	if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers psentinel.conf && \
		systemd-tmpfiles --create psentinel.conf && \
		systemctl daemon-reload; \
	fi

# Packages: stage a fresh `make install` tree, then package exactly that (asset lists in
# Cargo.toml). The packaging tools are installed on first use.
# The generator goes where Debian 12's systemd package has its own (/lib, the same directory
# through the /usr merge): under /usr/lib, dpkg would count the directory as psentinel's alone
# and warn on purge that it is not empty.
deb: build assets
	rm -rf $(PKGROOT)/deb
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(PKGROOT)/deb \
		GENERATORDIR=/lib/systemd/system-generators
	@$(CARGO) deb --version >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	$(CARGO) deb --no-build

# rpmbuild (Debian's rpm package) with packaging/rpm/psentinel.spec, which compiles nothing:
# it packages the staged tree, so the header (packager, group, changelog) is a real one.
RPM := target/rpm/psentinel-$(VERSION)-1.$(shell uname -m).rpm
rpm: build assets
	rm -rf $(PKGROOT)/rpm target/rpmbuild
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/$(PKGROOT)/rpm \
		ZSHCOMPDIR=$(PREFIX)/share/zsh/site-functions
	rpmbuild -bb --quiet \
		--define "_topdir $(CURDIR)/target/rpmbuild" \
		--define "_rpmdir $(CURDIR)/target/rpm" \
		--define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
		--define "pkgroot $(CURDIR)/$(PKGROOT)/rpm" \
		--define "pkgversion $(VERSION)" \
		packaging/rpm/psentinel.spec
	@echo $(RPM)

# Errors fail; warnings are listed (and overridden with a reason in packaging/debian/).
lintian: deb
	lintian --fail-on error --info $(DEB)

# Errors fail, except the missing signature (signing is the distributor's step); warnings
# are listed (those that do not apply are filtered, with a reason, in packaging/rpm/).
rpmlint: rpm
	@out=$$(rpmlint -c packaging/rpm/rpmlint.toml $(RPM)); echo "$$out"; \
	! echo "$$out" | grep ': E: ' | grep -v ': E: no-signature$$'

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

# bench/ and fuzz/ are workspaces of their own: linted here so that they keep building
# (on stable: fuzz/ is only checked, fuzzing itself needs nightly). They share target/.
check:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --locked -- -D warnings
	$(CARGO) fmt --check --manifest-path bench/Cargo.toml
	$(CARGO) clippy --manifest-path bench/Cargo.toml --target-dir target --all-targets --locked -- -D warnings
	$(CARGO) fmt --check --manifest-path fuzz/Cargo.toml
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --target-dir target --all-targets --locked -- -D warnings
	shellcheck tests/box/psbox tests/box/haproxy-trixie

# The tests that start a haproxy (tests/it/haproxy_support.rs): `make test` runs them twice,
# with the host's haproxy (Debian 12, 2.6) and with Debian 13's (3.0, tests/box/haproxy-trixie).
# A nextest filter, and the same as cargo test name filters for machines without nextest.
HAPROXY_TESTS      := binary(it) & (test(/^haproxy::/) | test(/^observe::/) | test(=dbus::wait_for_haproxy_after_disable_and_enable))
HAPROXY_TEST_NAMES := haproxy:: observe:: dbus::wait_for_haproxy_after_disable_and_enable

# The packages are built once here; tests/it/packages.rs tests exactly these files.
# Both runs always run; either failing fails `make test`. Debian 13's haproxy that cannot be
# built is a failure too, never a skip.
test: export PSENTINEL_TEST_DEB = $(CURDIR)/$(DEB)
test: export PSENTINEL_TEST_RPM = $(CURDIR)/$(RPM)
test: deps check deb rpm
	$(CARGO) build --locked
	@rc=0; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --locked --no-fail-fast   # haproxy: $$(haproxy -v | head -n 1)"; \
		$(CARGO) nextest run --locked --no-fail-fast || rc=1; \
	else \
		echo "$(CARGO) test --locked --no-fail-fast   # haproxy: $$(haproxy -v | head -n 1)"; \
		$(CARGO) test --locked --no-fail-fast || rc=1; \
	fi; \
	if ! hap=$$($(SUDO) tests/box/haproxy-trixie); then \
		echo "make test: FAILED to build Debian 13's haproxy (tests/box/haproxy-trixie): the HAProxy tests did not run against it" >&2; \
		exit 1; \
	fi; \
	echo "==> the HAProxy tests again, against Debian 13's haproxy: $$($$hap -v | head -n 1)"; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "PSENTINEL_HAPROXY=$$hap $(CARGO) nextest run --locked --no-fail-fast -E '$(HAPROXY_TESTS)'"; \
		PSENTINEL_HAPROXY=$$hap $(CARGO) nextest run --locked --no-fail-fast -E '$(HAPROXY_TESTS)' || rc=1; \
	else \
		echo "PSENTINEL_HAPROXY=$$hap $(CARGO) test --locked --no-fail-fast --test it -- $(HAPROXY_TEST_NAMES)"; \
		PSENTINEL_HAPROXY=$$hap $(CARGO) test --locked --no-fail-fast --test it -- $(HAPROXY_TEST_NAMES) || rc=1; \
	fi; \
	exit $$rc

# Foreground, debug log, no root: pid, socket and state under target/run.
run-example:
	mkdir -p target/run
	$(CARGO) run -- -D -f examples/psentinel-dev.cfg

# Not part of the test suite: numbers, not verdicts. nginx is the comparison, valgrind
# counts instructions; both are optional (the report says what was left out).
# `make bench BENCH=throughput` (or callgrind, footprint) runs one part.
BENCH ?= all
bench-deps:
	@for p in nginx-light valgrind; do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$p; \
	done

bench: build
	cd bench && $(CARGO) run --release --locked -- $(BENCH)

# cargo-fuzz with the nightly toolchain (libFuzzer needs -Z flags); new corpus entries go to
# fuzz/corpus/<target> (ignored by git), seeds stay in fuzz/seeds/<target>.
FUZZ_SECS    ?= 60
FUZZ_TARGETS := parse_head control_command config
fuzz:
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { \
		echo "make fuzz needs the nightly toolchain (sanitizer flags): rustup toolchain install nightly" >&2; exit 1; }
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t && \
		echo "fuzzing $$t for $(FUZZ_SECS) s" && \
		$(CARGO) +nightly fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done
