"""Pure ASGI middleware: the body-size limit, request metrics and the access log.

The limit is enforced as the body arrives, so a chunked body without ``Content-Length`` is
cut off at the limit too (413), before the app parses any of it. The access log and the
metrics name the route template (``/v1/recommendations/{user}``), never the path, so no raw
id reaches them.
"""

from __future__ import annotations

import json
import logging
import time

from recforget.service.http.errors import body

log = logging.getLogger("recforget.service.http.access")


async def _send_json(send, status: int, payload: dict, headers: list | None = None) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether or not they declare a length."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                length = v
        too_big = body(
            f"request body larger than {self.limit} bytes",
            [("body", f"at most {self.limit} bytes")],
        )
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _send_json(send, 400, body("Content-Length is not a number"))
                return
            if n > self.limit:
                await _send_json(send, 413, too_big)
                return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            part = msg.get("body", b"")
            size += len(part)
            if size > self.limit:
                await _send_json(send, 413, too_big)
                return
            chunks.append(part)
            if not msg.get("more_body", False):
                break
        data = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Observe:
    """Count and time every request by route template and status; write the access log."""

    def __init__(self, app, metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - t0
            self.metrics.observe_request(scope["method"], template, status["code"], seconds)
            log.info("%s %s %d %.1f ms", scope["method"], template, status["code"], seconds * 1000)


__all__ = ["BodyLimit", "Observe"]
