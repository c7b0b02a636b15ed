"""Packaging checks that need a checkout: workflow files and the pure build from git.

The full wheel/sdist round trip (auditwheel, a venv without a compiler, an offline
build from the sdist) is ``wheels/build.sh``, which ``scripts/test`` and the
``wheel-build`` job of ``.github/workflows/test.yml`` run; it checks each wheel
against setup.py's ``compiled_module_names()``, and the tests here check that list
against what the compiled set really imports, so neither can drift unseen.
These tests skip where the checkout is not around (cibuildwheel runs the suite from
a copy of ``tests/`` against the installed wheel).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str | None:
    # the venv's bin first: scripts/test installs actionlint there (the venv may not be on PATH)
    found = shutil.which(
        "actionlint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    return found


def test_workflows_pass_actionlint() -> None:
    if not WORKFLOWS.is_dir():
        pytest.skip("no .github/workflows here (tests run from a copy)")
    exe = _actionlint()
    if exe is None:
        if os.environ.get("FASTASGI_REQUIRE_ACTIONLINT", "") not in ("", "0"):
            pytest.fail("actionlint is required (FASTASGI_REQUIRE_ACTIONLINT) but not installed")
        pytest.skip("actionlint is not installed")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert files, "no workflow files"
    result = subprocess.run([exe, "-no-color", *files], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _checkout_files() -> list[str]:
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def test_pure_wheel_builds_offline_from_a_git_checkout(tmp_path: Path) -> None:
    """FASTASGI_NO_EXTENSIONS=1, no index, no third_party/llhttp: license-files must still match."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    for rel in _checkout_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    assert not (src / "third_party" / "llhttp").exists()
    env = {
        **os.environ,
        "FASTASGI_NO_EXTENSIONS": "1",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONWARNINGS": "error::DeprecationWarning:setuptools.dist",
    }
    env.pop("FASTASGI_REQUIRE_EXTENSIONS", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "out"),
            str(src),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (tmp_path / "out").glob("fastasgi-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.endswith((".so", ".pyd", ".c"))]
    licences = sorted(n.split("/licenses/", 1)[1] for n in names if ".dist-info/licenses/" in n)
    assert "LICENSE" in licences, licences


# distribution in the ``standard`` extra -> the module fastasgi imports from it
STANDARD_IMPORTS = {
    "uvloop": "uvloop",
    "websockets": "websockets",
    "wsproto": "wsproto",
    "watchfiles": "watchfiles",
    "python-dotenv": "dotenv",
    "PyYAML": "yaml",
    "prometheus_client": "prometheus_client",
    "h2": "h2",
}


def test_standard_extra_holds_what_runs() -> None:
    """Every package of the ``standard`` extra is imported by fastasgi at run time."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = ROOT / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("no pyproject.toml here (tests run from a copy)")
    standard = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]["standard"]
    names = {re.match(r"[A-Za-z0-9._-]+", req).group() for req in standard}  # type: ignore[union-attr]
    assert names == set(STANDARD_IMPORTS), names
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "fastasgi").rglob("*.py"))
    for dist, module in STANDARD_IMPORTS.items():
        assert re.search(rf"^\s*(import {module}\b|from {module}[. ])", sources, re.M), (dist, module)


def _setup_py() -> Any:
    """setup.py as a module (it runs ``setup()`` only when executed as __main__)."""
    pytest.importorskip("setuptools")
    path = ROOT / "setup.py"
    if not path.is_file():
        pytest.skip("no setup.py here (tests run from a copy)")
    spec = importlib.util.spec_from_file_location("fastasgi_setup", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.c_extension
def test_build_list_is_what_the_compiled_set_imports() -> None:
    """setup.py builds exactly the compiled modules the picker's compiled set runs on (its
    HTTP/2 protocol included: http2_c on libnghttp2 and its stream cycle, stream_c)."""
    built = _setup_py().compiled_module_names()
    code = (
        "import sys, fastasgi._speedups as s; s.load('c'); s.load_http2('c'); "
        "print(','.join(sorted(m.rsplit('.', 1)[1] for m in sys.modules "
        "if m.startswith('fastasgi._speedups.') and m.endswith('_c'))))"
    )
    env = {k: v for k, v in os.environ.items() if k != "FASTASGI_NO_EXTENSIONS"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )
    assert result.stdout.strip().split(",") == built


def test_build_sh_keeps_no_copy_of_the_module_list() -> None:
    script = ROOT / "wheels" / "build.sh"
    if not script.is_file():
        pytest.skip("no wheels/build.sh here (tests run from a copy)")
    text = script.read_text(encoding="utf-8")
    assert "compiled_module_names()" in text
    # a module name standing alone in quotes ("framing_c"), as the old copies of the list had it
    assert not re.findall(r"[\"'](?:parser|http|framing|coro)_c[\"']", text), "take the list from setup.py"


# -- wheels/build-nghttp2.sh: the download and its checksum ----------------------------------


@pytest.fixture
def served_tarball(tmp_path: Path):
    """A small .tar.gz (no configure, no configure.ac) served over HTTP on loopback:
    ``(url, sha256)``."""
    import hashlib
    import http.server
    import tarfile
    import threading

    src = tmp_path / "nghttp2-0.0.0"
    src.mkdir()
    (src / "README").write_text("not nghttp2\n")
    tarball = tmp_path / "served" / "nghttp2-0.0.0.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src, arcname=src.name)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tarball.parent), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{tarball.name}"
        yield url, hashlib.sha256(tarball.read_bytes()).hexdigest()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _build_nghttp2(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    script = ROOT / "wheels" / "build-nghttp2.sh"
    if not script.is_file() or shutil.which("bash") is None:
        pytest.skip("no wheels/build-nghttp2.sh here, or no bash")
    return subprocess.run(
        ["bash", str(script)],
        env={**os.environ, "NGHTTP2_PREFIX": str(tmp_path / "prefix"), "TMPDIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_build_nghttp2_refuses_a_download_whose_sha256_differs(tmp_path: Path, served_tarball) -> None:
    """The download path cibuildwheel takes (curl, else python3), against a tarball that
    is not the pinned release: refused before anything is unpacked or built."""
    url, _ = served_tarball
    done = _build_nghttp2(tmp_path, NGHTTP2_URL=url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"downloading {url}" in done.stdout
    assert "FAILED: sha256 of" in done.stderr and "expected da8d640f" in done.stderr
    assert not (tmp_path / "prefix").exists()


def test_build_nghttp2_downloads_checks_and_unpacks(tmp_path: Path, served_tarball) -> None:
    """With the served tarball's own sha256 the download passes the check and is unpacked;
    this one has no build system, which the script says (a real release goes on to build)."""
    url, sha256 = served_tarball
    done = _build_nghttp2(tmp_path, NGHTTP2_URL=url, NGHTTP2_VERSION="0.0.0", NGHTTP2_SHA256=sha256)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "nghttp2 0.0.0: " in done.stdout and f"(sha256 {sha256})" in done.stdout
    assert "FAILED: the tarball has neither configure nor configure.ac" in done.stderr
    assert not list(tmp_path.glob("nghttp2-build.*"))  # its work folder is removed on exit
