"""An app factory that records each call, for the ``--factory`` tests.

Each call appends this process's pid, one per line, to the file named by
``FASTASGI_TEST_FACTORY_LOG``: a factory must run exactly once per server process.
"""

from __future__ import annotations

import os
from typing import Any


def make() -> Any:
    with open(os.environ["FASTASGI_TEST_FACTORY_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})

    return app
