"""ASGI middlewares in front of KServe's routes: a body size limit, and JSON as the v2 default.

``BodyLimit`` refuses bodies over a size, as TorchServe's max_request_size does: a declared
Content-Length over the limit is answered 413 before the body is read; a body sent without
one (chunked) is counted as it arrives and refused once it passes the limit.

``JsonByDefault``: an Open Inference Protocol request with neither a Content-Type nor the
binary extension's Inference-Header-Content-Length is JSON (tritonclient sends JSON-only
requests so, and Triton reads them as JSON); KServe's route would take it for binary data.
"""

from __future__ import annotations

import json
from typing import Any, Callable


class _TooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received, started = 0, False

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Callable) -> None:
        body = json.dumps({"code": 413, "type": "PayloadTooLarge", "error": self.message(),
                           "message": self.message()}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def message(self) -> str:
        return f"the request body is over the limit of {self.max_bytes} bytes (max_request_size)"


class JsonByDefault:
    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v2/") and scope["path"].endswith("/infer"):
            names = {name.lower() for name, _ in scope.get("headers") or []}
            if b"content-type" not in names and b"inference-header-content-length" not in names:
                scope = {**scope, "headers": [*scope.get("headers", []), (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
