################################################################################
#
# pen
#
################################################################################

# The tarball `make dist` writes.
PEN_VERSION = 0.34.1
PEN_SOURCE = pen-$(PEN_VERSION).tar.gz
PEN_SITE = https://example.invalid/pen
PEN_LICENSE = GPL-2.0+
PEN_LICENSE_FILES = COPYING

# All five cargo binaries are the same multi-call program: build one.
PEN_CARGO_BUILD_OPTS = --bin pen

# Buildroot's cargo infrastructure builds for its toolchain's target (glibc,
# musl or uClibc-ng, static when BR2_STATIC_LIBS is set); install the one
# executable, the companions as links, and no manual pages (the target has
# no man).
define PEN_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/pen \
		$(TARGET_DIR)/usr/sbin/pen
	for c in penctl penlog penlogd mergelogs; do \
		ln -sf pen $(TARGET_DIR)/usr/sbin/$$c || exit 1; \
	done
endef

$(eval $(cargo-package))
