"""Helpers for driving the fleet consumers: communicators that always disconnect, staff cookies."""

from __future__ import annotations

import contextlib
import json
import time

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from console.asgi import application
from console.consumers.wire import DashboardCopy
from fleetagent import protocol


@contextlib.asynccontextmanager
async def ws_connected(path: str, *, headers=None, expect: bool = True):
    """Connect a communicator, check the outcome, and always disconnect on the way out."""
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    try:
        connected, code = await communicator.connect(timeout=5)
        assert connected is expect, f"expected connected={expect}, got close code {code}"
        yield communicator
    finally:
        await communicator.disconnect()


def agent_headers(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


# Dashboards check Origin (AllowedHostsOriginValidator): a page of our own site opens them.
OUR_ORIGIN = "http://127.0.0.1"


@database_sync_to_async
def session_cookie_headers(user, *, origin: str | None = OUR_ORIGIN) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


class DashboardReader:
    """A dashboard communicator's messages applied in order to a DashboardCopy (batches are deltas)."""

    def __init__(self, communicator) -> None:
        self.ws = communicator
        self.copy = DashboardCopy()
        self.messages: list[dict] = []

    async def next(self, timeout: float = 5) -> dict:
        message = json.loads(await self.ws.receive_from(timeout=timeout))
        assert self.copy.apply(message) is not None, f"batch {message.get('seq')} after {self.copy.seq}"
        self.messages.append(message)
        return message

    async def drain(self, quiet_s: float = 0.3) -> list[dict]:
        """Every message until the socket stays quiet for quiet_s."""
        got = []
        while not await self.ws.receive_nothing(timeout=quiet_s):
            got.append(await self.next())
        return got

    def readings(self, node_id: int) -> list[dict]:
        return self.copy.readings(node_id)

    def node(self, node_id: int) -> dict:
        return self.copy.nodes[node_id]


def hello(*, version: int = protocol.PROTOCOL_VERSION, **extra) -> str:
    fields = {
        "node": "",
        "hostname": "gpu-host-1",
        "agent_version": protocol.AGENT_VERSION,
        "engine": "cpu",
        "nvml": True,
        "gpu_model": "NVIDIA A10",
        "gpus": [{"index": 0, "name": "NVIDIA A10", "uuid": "GPU-1", "vram_total_mb": 23028.0}],
    }
    fields.update(extra)
    return protocol.message_encode(protocol.HELLO, version=version, **fields)


def sample(seq: int = 1, *, util: float = 55.0, ts: float | None = None, **node_stats) -> str:
    return protocol.message_encode(
        protocol.SAMPLE,
        seq=seq,
        ts=ts if ts is not None else time.time(),
        gpus=[
            {
                "index": 0,
                "utilization": util,
                "memory_utilization": 20.0,
                "vram_used_mb": 6100.0,
                "vram_total_mb": 23028.0,
                "temperature_c": 66.0,
                "power_w": 120.0,
                "power_limit_w": 150.0,
                "sm_clock_mhz": 1695.0,
                "throttle_reasons": 0,
                "ecc_errors": 0,
                "xid_errors": 0,
                "processes": [],
            }
        ],
        host={"cpu_percent": 12.0, "ram_used_mb": 2048.0, "ram_total_mb": 16384.0},
        node={"jobs_running": 1, "jobs_queued": 2, "success_rate_5m": 0.9, "draining": False, **node_stats},
    )
