"""Apps for the hardening tests: count calls, misbehave in the ways an app can."""

from __future__ import annotations

import asyncio

calls = {"n": 0, "disconnects": 0}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    calls["n"] += 1
    path = scope["path"]
    if path == "/read":
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                calls["disconnects"] += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})
        return
    if path == "/sleep":
        await asyncio.sleep(float(scope["query_string"] or b"0.5"))
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    body = {"type": "http.response.body", "body": b"ok"}
    bad = {
        "/bad-status-type": ({**start, "status": "200"}, body),
        "/bad-status-range": ({**start, "status": 1000}, body),
        "/missing-status": ({"type": "http.response.start", "headers": []}, body),
        "/missing-type": ({"status": 200, "headers": []}, body),
        "/headers-not-pairs": ({**start, "headers": [(b"a", b"b", b"c")]}, body),
        "/header-str": ({**start, "headers": [("x-a", "b")]}, body),
        "/body-str": (start, {"type": "http.response.body", "body": "text"}),
        "/wrong-type": (start, {"type": "http.response.start", "status": 200}),
        "/unknown-type": (start, {"type": "nope"}),
        "/more-body-then-str": (start, {"type": "http.response.body", "body": 42}),
        "/100-with-body": ({**start, "status": 101}, {"type": "http.response.body", "body": b"SMUGGLED"}),
        "/204-with-body": ({**start, "status": 204}, {"type": "http.response.body", "body": b"SMUGGLED"}),
        "/304-with-body": ({**start, "status": 304}, {"type": "http.response.body", "body": b"SMUGGLED"}),
        "/head-streamed": (start, {"type": "http.response.body", "body": b"SMUGGLED", "more_body": True}),
    }.get(path)
    if bad is None:
        await send(start)
        await send(body)
        return
    await send(bad[0])
    await send(bad[1])
    if bad[1].get("more_body"):
        await send({"type": "http.response.body", "body": b"SMUGGLED2"})
