#!/usr/bin/env bash
# Builds libnghttp2 for the wheels (README.md, "Wheels and supported Pythons"): a pinned
# nghttp2 release, checked against its sha256, as a static, PIC, library-only build
# installed into a prefix, so that setup.py's `pkg-config libnghttp2` finds it and links
# the HTTP/2 extension (http2_c) against it statically.  The wheel then carries nghttp2
# inside http2_c's shared object, and the repair step (auditwheel, delocate) has no
# library to bundle.
#
# cibuildwheel runs it once per build machine or container ([tool.cibuildwheel] in
# pyproject.toml: before-all on Linux, manylinux and musllinux, and macOS), from the
# project folder (the unpacked sdist, which ships this script).  Environment:
#
#   NGHTTP2_PREFIX   where to install (default /tmp/fastasgi-nghttp2; pyproject.toml's
#                    PKG_CONFIG_PATH points at its lib/pkgconfig)
#   NGHTTP2_TARBALL  a local release tarball instead of downloading the pinned one
#                    (offline checks, such as the one in README.md with Debian's
#                    nghttp2 source); with NGHTTP2_VERSION and NGHTTP2_SHA256 when it is
#                    not the pinned release
#   NGHTTP2_VERSION, NGHTTP2_SHA256   the release and the sha256 of its tarball
#   NGHTTP2_URL      where to download it from (default: the release's asset on GitHub;
#                    tests/test_packaging.py serves a tarball on loopback to check the
#                    download and the checksum refusal)
#   JOBS             parallel make jobs (default: the number of CPUs)
#
# Needs a C compiler, make and (without NGHTTP2_TARBALL) curl or python3 with network
# access to GitHub.  Takes about a minute.
set -euo pipefail

# The pinned release: https://github.com/nghttp2/nghttp2/releases (the .tar.gz asset;
# its sha256 as packagers publish it, e.g. Spack's nghttp2 recipe).  To update: change
# both, run this script (it refuses a tarball whose sha256 differs), rebuild a wheel.
PINNED_VERSION=1.67.1
PINNED_SHA256=da8d640f55036b1f5c9cd950083248ec956256959dc74584e12c43550d6ec0ef

VERSION=${NGHTTP2_VERSION:-$PINNED_VERSION}
SHA256=${NGHTTP2_SHA256:-$PINNED_SHA256}
PREFIX=${NGHTTP2_PREFIX:-/tmp/fastasgi-nghttp2}
URL=${NGHTTP2_URL:-https://github.com/nghttp2/nghttp2/releases/download/v$VERSION/nghttp2-$VERSION.tar.gz}

fail() { printf 'wheels/build-nghttp2.sh: FAILED: %s\n' "$*" >&2; exit 1; }

if [ -z "${JOBS:-}" ]; then
  JOBS=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 2)
fi
sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1  # (macOS)
  fi
}

if [ "$(uname -s)" = Linux ] && ! command -v pkg-config >/dev/null 2>&1; then
  # setup.py asks pkg-config for libnghttp2's flags; a build image without it gets it
  # from its own package manager (musllinux: Alpine's pkgconf)
  if command -v apk >/dev/null 2>&1; then apk add --no-cache pkgconf >/dev/null
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q pkgconf-pkg-config >/dev/null
  elif command -v yum >/dev/null 2>&1; then yum install -y -q pkgconfig >/dev/null
  fi
  command -v pkg-config >/dev/null 2>&1 || fail "no pkg-config, and no package manager to install it"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nghttp2-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -n "${NGHTTP2_TARBALL:-}" ]; then
  [ -f "$NGHTTP2_TARBALL" ] || fail "NGHTTP2_TARBALL=$NGHTTP2_TARBALL is not a file"
  TARBALL=$NGHTTP2_TARBALL
else
  TARBALL=$WORK/nghttp2-$VERSION.tar.gz
  echo "downloading $URL"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$TARBALL" "$URL" || fail "download of $URL"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$TARBALL" \
      || fail "download of $URL"
  fi
fi
GOT=$(sha256_of "$TARBALL")
[ "$GOT" = "$SHA256" ] || fail "sha256 of $TARBALL is $GOT, expected $SHA256 (nghttp2 $VERSION)"
echo "nghttp2 $VERSION: $TARBALL (sha256 $GOT)"

mkdir "$WORK/src"
tar -xf "$TARBALL" -C "$WORK/src" --strip-components=1  # (.tar.gz or .tar.xz)
cd "$WORK/src"
if [ ! -x configure ]; then
  # a tarball of the git tree (Debian's .orig, GitHub's "Source code" archives) has no
  # generated configure script: autoreconf makes it (release tarballs need no autotools)
  [ -f configure.ac ] || fail "the tarball has neither configure nor configure.ac"
  command -v autoreconf >/dev/null 2>&1 || fail "no configure script in the tarball and no autoreconf to make one"
  autoreconf -i >"$WORK/autoreconf.log" 2>&1 || { tail -40 "$WORK/autoreconf.log"; fail "autoreconf"; }
fi

if [ "$(uname -s)" = Darwin ] && [ -z "${MACOSX_DEPLOYMENT_TARGET:-}" ]; then
  # the oldest macOS the wheels support (cibuildwheel's defaults): the static library
  # must not need a newer one than the extension it is linked into
  if [ "$(uname -m)" = arm64 ]; then export MACOSX_DEPLOYMENT_TARGET=11.0; else export MACOSX_DEPLOYMENT_TARGET=10.13; fi
fi

# The library only (no nghttpx, h2load, examples, Python bindings: they would pull in
# OpenSSL, libev, c-ares...), static and position-independent, since it ends up inside
# a shared object.
./configure \
  --prefix="$PREFIX" \
  --libdir="$PREFIX/lib" \
  --enable-lib-only \
  --enable-static \
  --disable-shared \
  --with-pic \
  --disable-dependency-tracking \
  CFLAGS="${CFLAGS:--O2} -fPIC" >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log"; fail "configure"; }
make -j"$JOBS" >"$WORK/make.log" 2>&1 || { tail -40 "$WORK/make.log"; fail "make"; }
make install >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log"; fail "make install"; }

# what setup.py will find: the .pc file, the header, a static library and no shared one
PC=$PREFIX/lib/pkgconfig/libnghttp2.pc
[ -f "$PC" ] || fail "no $PC"
[ -f "$PREFIX/include/nghttp2/nghttp2.h" ] || fail "no nghttp2.h under $PREFIX/include"
[ -f "$PREFIX/lib/libnghttp2.a" ] || fail "no static library in $PREFIX/lib"
if ls "$PREFIX"/lib/libnghttp2*.so* "$PREFIX"/lib/libnghttp2*.dylib >/dev/null 2>&1; then
  fail "a shared libnghttp2 was installed: the extension would link it instead of the static one"
fi
FOUND=$(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --modversion libnghttp2 2>/dev/null) \
  || fail "pkg-config does not find libnghttp2 with PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig"
[ "$FOUND" = "$VERSION" ] || fail "pkg-config finds libnghttp2 $FOUND, not $VERSION"
echo "installed nghttp2 $VERSION (static, PIC) into $PREFIX; PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig"
