"""Build script of fastasgi: the optional compiled extensions.

Project metadata lives in pyproject.toml; this file only adds the extensions
(STYLE.md "Build and wheels" and "llhttp without vendoring"):

* ``fastasgi._speedups.parser_c`` from ``parser_c.pyx`` plus llhttp's C sources,
  and every other hand-written ``<stem>_c.pyx`` (``coro_c``) on its own;
* ``fastasgi._speedups.http2_c`` (HTTP/2 on libnghttp2) only where libnghttp2 is
  found: ``pkg-config libnghttp2`` gives its flags, else its header in the usual
  include folders; without it the build goes on and HTTP/2 runs on the pure path
  (``http2_py`` on ``h2``), also under FASTASGI_REQUIRE_EXTENSIONS (the required
  extensions are the HTTP/1.1 ones);
* ``fastasgi._speedups.<stem>_c`` for every ``<stem>_py.py`` that has a
  ``<stem>_c.pxd`` beside it (and no ``<stem>_c.pyx``): the plain-Python file
  is compiled by Cython under the ``_c`` module name.  Cython 3 finds the
  augmenting ``.pxd`` by *module name*, so ``Extension("..framing_c",
  ["../framing_py.py"])`` picks up ``framing_c.pxd`` with no copy or symlink
  (checked with Cython 3.3: a ``cdef class`` declared only in the .pxd comes
  out as an extension type).  Twins compile with ``annotation_typing=False``:
  their annotations are for mypy, the C types come from the .pxd.

Extensions are optional: no Cython, no compiler or a compile error prints a
warning and the install goes on with the pure-Python set.  Environment:

``FASTASGI_REQUIRE_EXTENSIONS=1``  any failure is an error (wheel builds).
``FASTASGI_NO_EXTENSIONS=1``       build no extension (also on PyPy).
``FASTASGI_SYSTEM_LLHTTP=1``       link a system libllhttp (``-lllhttp``,
                                   header from the system include path).
``FASTASGI_REQUIRE_NGHTTP2=1``     fail when libnghttp2 is not found (wheel builds
                                   that bundle it).
``FASTASGI_NO_NGHTTP2=1``          do not build http2_c even where libnghttp2 is.
``FASTASGI_LLHTTP_SDIST=path``     use this copy of the pinned httptools sdist
                                   instead of downloading it (offline builds).

llhttp without vendoring: no llhttp file is committed.  Its sources are taken
from the pinned httptools sdist (which carries them under ``vendor/llhttp/``),
checked against a hard-coded sha256 and unpacked into the git-ignored
``third_party/llhttp/`` (sources, header and llhttp's MIT LICENSE).  The sdist
of fastasgi carries that folder, so building from the sdist needs no network.

Generated C files go to ``build/cython/`` and never into the source tree,
the sdist or the wheels.  Development: ``python3 setup.py build_ext --inplace``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.sdist import sdist as _sdist

ROOT = Path(__file__).resolve().parent
SPEEDUPS = Path("fastasgi", "_speedups")  # relative: setuptools wants relative sources

# -- pinned llhttp source -------------------------------------------------------
LLHTTP_DIST = "httptools"
LLHTTP_DIST_VERSION = "0.9.0"  # carries llhttp 9.4.3 in vendor/llhttp/
LLHTTP_SDIST_NAME = f"{LLHTTP_DIST}-{LLHTTP_DIST_VERSION}.tar.gz"
LLHTTP_SDIST_SHA256 = "d484ebb7e3a3f3597b0f645fbd1b85633674ca808c1f5ba11c2caf7c66f5c8b6"
# member of the sdist (below its top folder) -> path in third_party/llhttp/
LLHTTP_FILES = {
    "vendor/llhttp/include/llhttp.h": "include/llhttp.h",
    "vendor/llhttp/src/api.c": "src/api.c",
    "vendor/llhttp/src/http.c": "src/http.c",
    "vendor/llhttp/src/llhttp.c": "src/llhttp.c",
    "vendor/llhttp/LICENSE": "LICENSE",
}
LLHTTP_DIR = Path("third_party", "llhttp")  # git-ignored; shipped in the sdist
DOWNLOAD_DIR = Path("build", "downloads")

# -- environment -----------------------------------------------------------------


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


REQUIRE = _flag("FASTASGI_REQUIRE_EXTENSIONS")
SYSTEM_LLHTTP = _flag("FASTASGI_SYSTEM_LLHTTP")
REQUIRE_NGHTTP2 = _flag("FASTASGI_REQUIRE_NGHTTP2")
NO_NGHTTP2 = _flag("FASTASGI_NO_NGHTTP2")
NGHTTP2_MODULE = "http2_c"  # the one extension that needs libnghttp2


def _log(message: str) -> None:
    print(f"fastasgi setup: {message}", file=sys.stderr, flush=True)


class LlhttpError(Exception):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def _llhttp_complete(folder: Path) -> bool:
    return all((ROOT / folder / dest).is_file() for dest in LLHTTP_FILES.values())


def _download_sdist() -> Path:
    """The pinned httptools sdist: $FASTASGI_LLHTTP_SDIST, a cached copy, or pip download."""
    given = os.environ.get("FASTASGI_LLHTTP_SDIST")
    if given:
        return Path(given)
    target = ROOT / DOWNLOAD_DIR / LLHTTP_SDIST_NAME
    if target.is_file():
        return target
    _log(f"downloading {LLHTTP_DIST}=={LLHTTP_DIST_VERSION} (sdist) for llhttp's C sources")
    (ROOT / DOWNLOAD_DIR).mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", f"{LLHTTP_DIST}=={LLHTTP_DIST_VERSION}", "-d", str(ROOT / DOWNLOAD_DIR),
    ]  # fmt: skip
    # Inside pip's isolated build environment, PYTHONPATH points at an overlay
    # that hides the interpreter's own site-packages (and so pip itself):
    # run pip from the interpreter's normal environment instead.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE")}
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, check=False)
    if not target.is_file():
        tail = "\n".join(result.stdout.strip().splitlines()[-5:])
        raise LlhttpError(
            f"could not download {LLHTTP_SDIST_NAME} with pip ({tail}); build from fastasgi's sdist, "
            f"or point FASTASGI_LLHTTP_SDIST at a copy of that file"
        )
    return target


def ensure_llhttp() -> Path:
    """Return the folder holding llhttp's sources, unpacking them if needed."""
    if _llhttp_complete(LLHTTP_DIR):
        return LLHTTP_DIR
    sdist = _download_sdist()
    found = _sha256(sdist)
    if found != LLHTTP_SDIST_SHA256:
        raise LlhttpError(
            f"{sdist} has sha256 {found}, expected {LLHTTP_SDIST_SHA256} "
            f"(the pinned {LLHTTP_SDIST_NAME}); refusing to build from it"
        )
    top = f"{LLHTTP_DIST}-{LLHTTP_DIST_VERSION}/"
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp, tarfile.open(sdist, "r:gz") as tar:
        staging = Path(tmp, "llhttp")
        for member, dest in LLHTTP_FILES.items():
            info = tar.getmember(top + member)  # KeyError if missing: the pin is wrong
            if not info.isfile():
                raise LlhttpError(f"{member} in {sdist} is not a regular file")
            out = staging / dest
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(info) as src, open(out, "wb") as dst:  # type: ignore[union-attr]
                shutil.copyfileobj(src, dst)
        (staging / "SOURCE.txt").write_text(
            f"llhttp C sources taken from {LLHTTP_SDIST_NAME} (sha256 {LLHTTP_SDIST_SHA256}),\n"
            "folder vendor/llhttp/, by fastasgi's setup.py.  llhttp is MIT-licensed (see LICENSE).\n"
        )
        dest_dir = ROOT / LLHTTP_DIR
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(dest_dir))
    _log(f"llhttp sources unpacked into {LLHTTP_DIR}/")
    return LLHTTP_DIR


# -- libnghttp2 ------------------------------------------------------------------

_nghttp2_cache: list = []


def nghttp2_flags() -> dict[str, list[str]] | None:
    """Build flags of libnghttp2 (Extension keyword arguments), or None when it is not found."""
    if _nghttp2_cache:
        return _nghttp2_cache[0]
    flags: dict[str, list[str]] | None = None
    if not NO_NGHTTP2:
        try:
            result = subprocess.run(
                ["pkg-config", "--cflags", "--libs", "libnghttp2"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            result = None
        if result is not None and result.returncode == 0:
            flags = {"include_dirs": [], "library_dirs": [], "libraries": [], "extra_compile_args": []}
            for word in result.stdout.split():
                if word.startswith("-I"):
                    flags["include_dirs"].append(word[2:])
                elif word.startswith("-L"):
                    flags["library_dirs"].append(word[2:])
                elif word.startswith("-l"):
                    flags["libraries"].append(word[2:])
                else:
                    flags["extra_compile_args"].append(word)
        else:  # no pkg-config (or no .pc file): the header where compilers look by default
            for folder in ("/usr/include", "/usr/local/include", "/opt/homebrew/include"):
                if Path(folder, "nghttp2", "nghttp2.h").is_file():
                    flags = {"include_dirs": [folder], "libraries": ["nghttp2"]}
                    lib = Path(folder).parent / "lib"
                    if folder != "/usr/include" and lib.is_dir():
                        flags["library_dirs"] = [str(lib)]
                    break
    _nghttp2_cache.append(flags)
    return flags


# -- which build -----------------------------------------------------------------


def _twin_stems() -> list[str]:
    """Stems of plain-Python modules that get compiled: <stem>_py.py + <stem>_c.pxd, no .pyx."""
    stems = []
    for py in sorted((ROOT / SPEEDUPS).glob("*_py.py")):
        stem = py.name[: -len("_py.py")]
        if (py.parent / f"{stem}_c.pxd").is_file() and not (py.parent / f"{stem}_c.pyx").is_file():
            stems.append(stem)
    return stems


def _pure_reason() -> str | None:
    if platform.python_implementation() != "CPython":
        return f"{platform.python_implementation()} runs the pure-Python set"
    if _flag("FASTASGI_NO_EXTENSIONS"):
        return "FASTASGI_NO_EXTENSIONS is set"
    try:
        import Cython  # noqa: F401
    except ImportError:
        return "Cython is not installed"
    return None


def _extensions() -> list[Extension]:
    optional = not REQUIRE
    exts = [
        Extension(f"fastasgi._speedups.{pyx.stem}", [str(SPEEDUPS / pyx.name)], optional=optional)
        for pyx in sorted((ROOT / SPEEDUPS).glob("*_c.pyx"))
        if pyx.stem != NGHTTP2_MODULE
    ]
    flags = nghttp2_flags()
    if flags is not None:
        # (after stream_c in build order: http2_c cimports it; listed last, below)
        exts_http2 = [
            Extension(
                f"fastasgi._speedups.{NGHTTP2_MODULE}",
                [str(SPEEDUPS / f"{NGHTTP2_MODULE}.pyx")],
                optional=optional and not REQUIRE_NGHTTP2,
                **flags,
            )
        ]
    else:
        exts_http2 = []
    for stem in _twin_stems():
        if stem == "stream" and flags is None:
            continue  # the HTTP/2 stream cycle: only http2_c runs the compiled one
        exts.append(Extension(f"fastasgi._speedups.{stem}_c", [str(SPEEDUPS / f"{stem}_py.py")], optional=optional))
    return exts + exts_http2


class build_ext(_build_ext):
    """Cythonizes each extension lazily, right before compiling it.

    Calling cythonize() up front would turn the Extensions into Cython's own
    objects and drop ``optional``; doing it here also keeps a missing Cython
    or llhttp a per-extension, recoverable failure.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:  # the C compiles run side by side (cythonize stays serial, below)
            self.parallel = os.cpu_count() or 1

    def build_extensions(self) -> None:
        # cythonize every extension first, one at a time (not thread-safe); a failure is
        # left for build_extension to report or fall back from
        for ext in self.extensions:
            try:
                self._prepare(ext)
            except Exception:
                pass
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            self._prepare(ext)
            super().build_extension(ext)
        except Exception as exc:  # any failure falls back unless required
            if REQUIRE or not getattr(ext, "optional", False):
                raise
            _log(
                f"WARNING: could not build {ext.name} ({type(exc).__name__}: {exc}); "
                "the pure-Python fallback will be used"
            )

    def _prepare(self, ext: Extension) -> None:
        if getattr(ext, "_fastasgi_prepared", False):
            return
        if ext.name.endswith(".parser_c"):
            if SYSTEM_LLHTTP:
                ext.libraries = [*ext.libraries, "llhttp"]
            else:
                folder = ensure_llhttp()
                ext.include_dirs = [*ext.include_dirs, str(folder / "include")]
                ext.sources = [*ext.sources, *(str(folder / "src" / c) for c in ("api.c", "http.c", "llhttp.c"))]
        elif not SYSTEM_LLHTTP:
            # http_c cimports the parser's type, whose struct embeds llhttp_t: the header is needed
            ext.include_dirs = [*ext.include_dirs, str(ensure_llhttp() / "include")]
        if self.compiler.compiler_type == "msvc":
            ext.extra_compile_args = [*ext.extra_compile_args, "/O2"]
        else:
            ext.extra_compile_args = [*ext.extra_compile_args, "-O2"]

        from Cython.Build import cythonize

        directives = {"language_level": "3", "embedsignature": True}
        if ext.sources[0].endswith("_py.py"):
            # A plain-Python twin: its annotations are for mypy and PyPy; the C
            # types come from the augmenting <stem>_c.pxd.  Letting Cython type
            # from annotations too makes e.g. ``http11: bool`` clash with
            # ``bint http11`` in the .pxd ("Function signature does not match
            # previous declaration").
            directives["annotation_typing"] = False
        (new_ext,) = cythonize(
            [ext],
            build_dir=str(Path("build", "cython")),  # generated .c never lands in the tree
            include_path=[str(ROOT)],
            compiler_directives=directives,
            force=self.force,
            quiet=not self.verbose,
        )
        ext.sources = new_ext.sources
        ext._fastasgi_prepared = True  # type: ignore[attr-defined]


class sdist(_sdist):
    """Puts llhttp's sources (and its LICENSE) into the sdist: no network needed to build it."""

    def run(self) -> None:
        if not SYSTEM_LLHTTP:
            ensure_llhttp()
        super().run()


def compiled_module_names() -> list[str]:
    """The build's own list of compiled modules (``parser_c``, ...): what a compiled wheel must hold.

    ``wheels/build.sh`` and ``tests/test_packaging.py`` check wheels against this list
    (they import this file; ``setup()`` runs only when it is executed), so it exists once.
    """
    return sorted(e.name.rsplit(".", 1)[1] for e in _extensions())


if __name__ == "__main__":  # setuptools (pip, build) executes this file as __main__
    reason = _pure_reason()
    if reason is None:
        ext_modules = _extensions()
        _log("building compiled extensions: " + ", ".join(e.name.rsplit(".", 1)[1] for e in ext_modules))
        if nghttp2_flags() is None:
            if REQUIRE_NGHTTP2:
                sys.exit(
                    "fastasgi setup: FASTASGI_REQUIRE_NGHTTP2 is set but libnghttp2 was not found (pkg-config libnghttp2)"
                )
            _log("libnghttp2 not found (pkg-config libnghttp2): HTTP/2 will run on the pure-Python path (h2)")
    else:
        if REQUIRE:
            sys.exit(f"fastasgi setup: FASTASGI_REQUIRE_EXTENSIONS is set but no extension can be built: {reason}")
        ext_modules = []
        _log(f"building pure-Python fallback only: {reason}")

    setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext, "sdist": sdist})
