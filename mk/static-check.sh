#!/bin/sh
# `make STATIC=1` guard: before the build, check that the Rust target and a
# linker for it are installed; after it, check that the executable needs no
# shared library. Every failure is one line saying what to install, and
# the build stops: it never falls back to a dynamic executable.
# Usage: TARGET=<arch>-unknown-linux-musl static-check.sh before|after FILE
set -u
fail() { echo "make STATIC=1: $*" >&2; exit 1; }

case "$1" in
before)
    case "$TARGET" in
    *-linux-musl*) ;;
    *) fail "TARGET=$TARGET is not a musl target; static builds need <arch>-unknown-linux-musl" ;;
    esac
    libdir=$(rustc --print target-libdir --target "$TARGET" 2>/dev/null) ||
        fail "rustc does not know the target $TARGET (see rustc --print target-list)"
    ls "$libdir"/libstd-*.rlib >/dev/null 2>&1 ||
        fail "the Rust target $TARGET is not installed: run 'rustup target add $TARGET'"
    arch=${TARGET%%-*}
    linker_var=CARGO_TARGET_$(echo "$TARGET" | tr 'a-z-' 'A-Z_')_LINKER
    eval "linker=\${$linker_var:-}"
    if [ -n "$linker" ]; then
        command -v "$linker" >/dev/null 2>&1 ||
            fail "$linker_var=$linker, which is not installed"
    elif [ "$arch" = "$(uname -m)" ]; then
        # Rust ships musl's C library and start files for the target; the
        # host's C compiler driver links them.
        command -v cc >/dev/null 2>&1 ||
            fail "no C compiler 'cc' to link with: install gcc (apt-get install gcc)"
    else
        fail "no linker for $TARGET: install an $arch-linux-musl cross toolchain and set $linker_var=$arch-linux-musl-gcc"
    fi
    ;;
after)
    file=$2
    command -v readelf >/dev/null 2>&1 ||
        fail "cannot check that $file is static: readelf is missing (install binutils)"
    needed=$(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ' | sed 's/ $//')
    [ -z "$needed" ] || fail "$file needs shared libraries ($needed): not a static build"
    ;;
*)
    fail "static-check.sh: say before or after"
    ;;
esac
