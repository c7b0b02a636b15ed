"""At TRACE level, logs every ASGI message sent and received (bodies abbreviated)."""

from __future__ import annotations

import logging
from typing import Any

from fastasgi.errors import TRACE_LOG_LEVEL


def _abbreviated(message: dict[str, Any]) -> dict[str, Any]:
    out = dict(message)
    for key in ("body", "bytes", "text"):
        if key in out and out[key] is not None:
            out[key] = f"<{len(out[key])} {'chars' if key == 'text' else 'bytes'}>"
    return out


class MessageLoggerMiddleware:
    def __init__(self, app: Any) -> None:
        self.task_counter = 0
        self.app = app
        self.logger = logging.getLogger("uvicorn.asgi")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.task_counter += 1
        task_counter = self.task_counter
        client = scope.get("client")
        prefix = f"{client[0]}:{client[1]:d} - ASGI" if client else "ASGI"

        async def inner_receive() -> Any:
            message = await receive()
            self.logger.log(TRACE_LOG_LEVEL, "%s [%d] Receive %s", prefix, task_counter, _abbreviated(message))
            return message

        async def inner_send(message: Any) -> None:
            self.logger.log(TRACE_LOG_LEVEL, "%s [%d] Send %s", prefix, task_counter, _abbreviated(message))
            await send(message)

        self.logger.log(TRACE_LOG_LEVEL, "%s [%d] Started scope=%s", prefix, task_counter, scope)
        try:
            await self.app(scope, inner_receive, inner_send)
        except BaseException as exc:
            self.logger.log(TRACE_LOG_LEVEL, "%s [%d] Raised exception", prefix, task_counter)
            raise exc from None
        else:
            self.logger.log(TRACE_LOG_LEVEL, "%s [%d] Completed", prefix, task_counter)
