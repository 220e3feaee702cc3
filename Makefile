# pen: build, test and install. `make TLS=1 ...` enables TLS termination
# (needs OpenSSL 3 development files: libssl-dev on Debian/Ubuntu,
# openssl-devel on Fedora).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man/man1
CARGO ?= cargo
INSTALL ?= install

FEATURES := $(if $(TLS),--features tls,)
# Where `make` puts the binaries that `make install` copies.
BUILDDIR ?= target/release
BINS := pen penctl penlog penlogd mergelogs
MANS := $(wildcard man/*.1)

.PHONY: all check install uninstall clean

all:
	$(CARGO) build --release $(FEATURES)

check:
	$(CARGO) test $(FEATURES)

# Installing does not build: `make && sudo make install` (root often has no
# cargo).
install:
	@for b in $(BINS); do test -x $(BUILDDIR)/$$b || { echo "$(BUILDDIR)/$$b is missing: run make first" >&2; exit 1; }; done
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)
	for b in $(BINS); do $(INSTALL) -m 0755 $(BUILDDIR)/$$b $(DESTDIR)$(BINDIR)/$$b || exit 1; done
	for m in $(MANS); do $(INSTALL) -m 0644 $$m $(DESTDIR)$(MANDIR)/ || exit 1; done

uninstall:
	for b in $(BINS); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
	for m in $(notdir $(MANS)); do rm -f $(DESTDIR)$(MANDIR)/$$m; done

clean:
	$(CARGO) clean
