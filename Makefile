# pen: build, test and install.
#
#   make                 release build, linked against the system's C library
#   make TLS=1           with TLS termination (needs OpenSSL 3 development
#                        files: libssl-dev on Debian/Ubuntu, openssl-devel on
#                        Fedora); always dynamically linked
#   make STATIC=1        one static executable, no shared libraries at all,
#                        for TARGET (default: this machine's <arch>-unknown-
#                        linux-musl; needs `rustup target add TARGET`)
#   make fuzz            run every fuzz target for FUZZ_SECONDS (default 60)
#                        each; needs the nightly toolchain and cargo-fuzz
#                        (fuzz/README.md)
#   make install         pen, links penctl penlog penlogd mergelogs -> pen
#                        (LINKS=hard for hard links), the five manual pages
#                        compressed as NAME.1.gz (GZIP_MAN=0: as NAME.1, for
#                        packaging tools that compress them themselves, such
#                        as Debian's dh_compress or Alpine's abuild), COPYING
#                        and README.md in DOCDIR
#
# One executable holds all five programs and runs the one named by the name
# it is called as (src/multicall.rs).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man/man1
DOCDIR ?= $(PREFIX)/share/doc/pen
CARGO ?= cargo
INSTALL ?= install
# symbolic (the default) or hard.
LINKS ?= symbolic
# 1 (the default): manual pages installed gzipped, as distros ship them;
# 0: installed as they are.
GZIP_MAN ?= 1

PROGRAM := pen
COMPANIONS := penctl penlog penlogd mergelogs
MANS := $(wildcard man/*.1)
DOCS := COPYING README.md

FEATURES := $(if $(TLS),--features tls,)

ifneq ($(STATIC),)
ifneq ($(TLS),)
$(error TLS=1 cannot be combined with STATIC=1: TLS links the system's OpenSSL dynamically)
endif
TARGET ?= $(shell uname -m)-unknown-linux-musl
# Before building, the target and its linker must be there; otherwise stop
# with the one line saying what to install.
ifneq ($(filter all,$(or $(MAKECMDGOALS),all)),)
STATIC_PROBLEM := $(shell TARGET=$(TARGET) sh mk/static-check.sh before 2>&1)
ifneq ($(STATIC_PROBLEM),)
$(error $(STATIC_PROBLEM))
endif
endif
endif

# Where `make` puts the executable that `make install` copies.
ifneq ($(TARGET),)
BUILDDIR ?= target/$(TARGET)/release
TARGET_FLAG := --target $(TARGET)
else
BUILDDIR ?= target/release
TARGET_FLAG :=
endif

.PHONY: all check check-static fuzz install uninstall dist clean

# All five cargo binaries are the same program; building one is enough.
all:
	$(CARGO) build --release --bin $(PROGRAM) $(TARGET_FLAG) $(FEATURES)
ifneq ($(STATIC),)
	@TARGET=$(TARGET) sh mk/static-check.sh after $(BUILDDIR)/$(PROGRAM)
endif

check:
	$(CARGO) test $(FEATURES)

# The static executable, installed with its links, under a slice of the
# integration tests (they run the programs in PEN_TEST_BINDIR).
STATIC_TESTS := --test relay --test selection --test control --test companions \
	--test logs_end_to_end --test operations --test cli --test install --test udp \
	--test static_chroot
STATIC_FILTERS := fifty_clients half_close fail_over penctl_behaviour \
	settings_change_live_traffic penlogd penlog_sends runs_as_the_given_user \
	chroot_jail service_names_resolve unknown_user help_and_version \
	installed_links works_after_dropping_privileges bare_chroot
check-static:
	$(MAKE) STATIC=1 all
	rm -rf target/static-root
	$(MAKE) STATIC=1 install DESTDIR=$(CURDIR)/target/static-root PREFIX=/usr
	PEN_TEST_BINDIR=$(CURDIR)/target/static-root/usr/bin \
		$(CARGO) test $(STATIC_TESTS) -- $(STATIC_FILTERS)

# Each target starts from its committed seeds (fuzz/corpus/TARGET, only
# read) and keeps what it finds in fuzz/work/TARGET (not committed). A
# finding stops the run with the input saved in fuzz/artifacts/TARGET.
# FUZZ_BUILD_FLAGS go to `cargo fuzz run` (e.g. `-s none`), FUZZ_ARGS to
# libFuzzer (e.g. `-runs=10000000`).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs)))
FUZZ_BUILD_FLAGS ?=
FUZZ_ARGS ?=
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p work/$$t || exit 1; \
		$(CARGO) +nightly fuzz run $(FUZZ_BUILD_FLAGS) $$t work/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS) || exit 1; \
	done

# Installing does not build: `make && sudo make install` (root often has no
# cargo). `gzip -n` leaves the name and time stamp out of the header, so the
# pages are the same bytes on every install.
install:
	@test -x $(BUILDDIR)/$(PROGRAM) || { echo "$(BUILDDIR)/$(PROGRAM) is missing: run make first" >&2; exit 1; }
	@case "$(LINKS)" in symbolic|hard) ;; *) echo "LINKS=$(LINKS): say LINKS=symbolic or LINKS=hard" >&2; exit 1;; esac
	@case "$(GZIP_MAN)" in 0|1) ;; *) echo "GZIP_MAN=$(GZIP_MAN): say GZIP_MAN=1 or GZIP_MAN=0" >&2; exit 1;; esac
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 $(BUILDDIR)/$(PROGRAM) $(DESTDIR)$(BINDIR)/$(PROGRAM)
	for c in $(COMPANIONS); do \
		rm -f $(DESTDIR)$(BINDIR)/$$c || exit 1; \
		if [ "$(LINKS)" = hard ]; then \
			ln $(DESTDIR)$(BINDIR)/$(PROGRAM) $(DESTDIR)$(BINDIR)/$$c || exit 1; \
		else \
			ln -s $(PROGRAM) $(DESTDIR)$(BINDIR)/$$c || exit 1; \
		fi; \
	done
	for m in $(MANS); do \
		page=$(DESTDIR)$(MANDIR)/$${m##*/}; \
		rm -f $$page $$page.gz || exit 1; \
		if [ "$(GZIP_MAN)" = 1 ]; then \
			gzip -9nc $$m >$$page.gz && chmod 0644 $$page.gz || exit 1; \
		else \
			$(INSTALL) -m 0644 $$m $$page || exit 1; \
		fi; \
	done
	for d in $(DOCS); do $(INSTALL) -m 0644 $$d $(DESTDIR)$(DOCDIR)/ || exit 1; done

# Removes each page in either form, whichever GZIP_MAN installed it.
uninstall:
	for b in $(PROGRAM) $(COMPANIONS); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for m in $(notdir $(MANS)); do rm -f $(DESTDIR)$(MANDIR)/$$m $(DESTDIR)$(MANDIR)/$$m.gz; done
	for d in $(DOCS); do rm -f $(DESTDIR)$(DOCDIR)/$$d; done
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true

# The source tarball the recipes in contrib/ build from: the committed tree.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
dist:
	git archive --format=tar.gz --prefix=pen-$(VERSION)/ -o pen-$(VERSION).tar.gz HEAD

clean:
	$(CARGO) clean
