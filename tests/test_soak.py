"""Soak (issue 7): keep-alive + pipelined GET/POST/chunked/streamed requests and WebSocket
messages against a server subprocess; RSS flat after warm-up, fds all released.

The suite runs 20k requests per implementation; the long run is
``python3 scripts/soak.py --requests 1000000 --impl c`` (and ``--impl py``).
"""

from __future__ import annotations

import json
import platform
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    # PyPy 7.3.11: RSS keeps growing well past the short run's warm-up (JIT code and GC
    # arenas), ~35 MB over 20,000 requests, with the code of the previous landing too:
    # the short soak cannot tell that from a leak there (the long run, scripts/soak.py, can)
    pytest.mark.skipif(platform.python_implementation() == "PyPy", reason="PyPy: RSS grows past the short warm-up"),
]


@pytest.mark.parametrize("impl", [pytest.param("c", marks=pytest.mark.c_extension), "py"])
def test_soak_short(impl):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "scripts", "soak.py"),
            "--requests",
            "20000",
            "--impl",
            impl,
            "--max-seconds",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["requests"] >= 20000 and result["websocket_messages"] > 0, result
    assert result["fds_after"] <= result["fds_before"], result
    assert result["rss_growth_after_warmup_kb"] <= 8 * 1024, result
    assert proc.returncode == 0, (result, proc.stderr[-2000:])
