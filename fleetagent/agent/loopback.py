"""An in-process websocket to the console's own ASGI app (the embedded local agent).

The embedded agent speaks the same protocol to the same AgentConsumer as a remote agent,
but through the ASGI interface directly instead of a TCP port (the server's port is not
known inside the lifespan hook, and a loopback socket would only add a failure mode).
It is trusted through a scope key no network client can set, so no token is needed.
"""

from __future__ import annotations

import asyncio
import contextlib

EMBEDDED_SCOPE_KEY = "voxfleet_embedded_node_id"


class LoopbackClosed(ConnectionError):
    """The consumer closed the in-process socket."""


class LoopbackConnection:
    def __init__(self, app, *, node_id: int, path: str = "/ws/agent/") -> None:
        self.app = app
        self.scope = {
            "type": "websocket",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [],
            "subprotocols": [],
            "client": ("in-process", 0),
            "server": ("in-process", 0),
            EMBEDDED_SCOPE_KEY: node_id,
        }
        self._to_app: asyncio.Queue = asyncio.Queue()
        self._from_app: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.closed = False

    async def __aenter__(self) -> LoopbackConnection:
        self._task = asyncio.create_task(self.app(self.scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "websocket.connect"})
        first = await asyncio.wait_for(self._from_app.get(), timeout=10)
        if first["type"] != "websocket.accept":
            self.closed = True
            raise LoopbackClosed(f"console refused the in-process agent ({first})")
        return self

    async def __aexit__(self, *exc) -> None:
        if not self.closed:
            self.closed = True
            await self._to_app.put({"type": "websocket.disconnect", "code": 1000})
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:  # noqa: BLE001 - the consumer's own error is logged by Channels
                pass

    async def send(self, data: str | bytes) -> None:
        if self.closed:
            raise LoopbackClosed("in-process socket is closed")
        key = "bytes" if isinstance(data, bytes | bytearray) else "text"
        await self._to_app.put({"type": "websocket.receive", key: bytes(data) if key == "bytes" else data})

    async def recv(self) -> str:
        while True:
            message = await self._from_app.get()
            if message["type"] == "websocket.send":
                return message.get("text") or message.get("bytes")
            if message["type"] == "websocket.close":
                self.closed = True
                raise LoopbackClosed(f"console closed the in-process socket ({message.get('code')})")

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        try:
            return await self.recv()
        except LoopbackClosed:
            raise StopAsyncIteration from None


@contextlib.asynccontextmanager
async def loopback_connect(app, *, node_id: int):
    async with LoopbackConnection(app, node_id=node_id) as conn:
        yield conn
