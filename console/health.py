"""``/healthz``: answers 200 when the database and the channel layer both answer."""

from __future__ import annotations

import asyncio
import time

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

PROBE_TIMEOUT_S = 2.0


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_layer_ok() -> None:
    # A real round trip, not a ping: send to a fresh channel and read it back.
    layer = get_channel_layer()
    # The default prefix on purpose: channels_redis reads this process's channels through one
    # receive loop, and a channel with a prefix of its own waits for that loop's lock behind
    # every connected consumer (about a second each); on the shared prefix whichever consumer
    # holds the lock hands our message over at once.
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned a different message")


async def _probe(check) -> tuple[bool, float, str]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", reported by name
        return False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"
    return True, (time.perf_counter() - started) * 1000, ""


async def healthz(request):
    checks = {
        # Off asgiref's shared thread, where every consumer's database call queues.
        "database": database_sync_to_async(_database_ok, thread_sensitive=False),
        "channel_layer": _channel_layer_ok,
    }
    parts = {}
    for name, check in checks.items():
        ok, ms, error = await _probe(check)
        parts[name] = {"ok": ok, "ms": round(ms, 1)} | ({"error": error} if error else {})
    failing = [name for name, part in parts.items() if not part["ok"]]
    body = {"status": "ok" if not failing else "unavailable", "failing": failing, "checks": parts}
    return JsonResponse(body, status=200 if not failing else 503)
