"""Lifespan disabled: startup and shutdown do nothing; ``state`` is an empty dict."""

from __future__ import annotations

from typing import Any


class LifespanOff:
    def __init__(self, config: Any) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass
