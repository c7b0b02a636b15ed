"""A real Flask app for tests/test_wsgi.py, served with ``--interface wsgi``.

Handlers print what the tests wait for (the test process reads the server's
output), so no test has to sleep to know where a request is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "hello from flask"


@app.post("/upload")
def upload() -> dict[str, object]:
    # request.get_data() is how Flask apps read a body; Werkzeug reads a body without
    # Content-Length (chunked) as empty unless the server sets wsgi.input_terminated
    try:
        data = request.get_data()
    except OSError as exc:
        print(f"upload failed: {type(exc).__name__}", flush=True)
        raise
    print(f"upload: {len(data)} bytes", flush=True)
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.get("/sleep")
def sleep() -> str:
    print("sleep started", flush=True)
    time.sleep(float(request.args.get("s", "1")))
    return "slept"


@app.get("/stream")
def stream() -> Response:
    # a long response (server-sent events style) that ends by itself after a minute
    def generate() -> Iterator[bytes]:
        for i in range(600):
            yield b"tick %d\n" % i
            time.sleep(0.1)

    return Response(generate(), mimetype="text/plain")
