"""The per-process fleet hub: batches agent samples for the database and for dashboards.

Agent consumers hand each sample to the hub (no I/O on the hot path). Once per
FANOUT_INTERVAL_S the hub encodes one message with what changed since the last one (per node
only the keys and GPU fields that differ: console.consumers.wire) and hands the same text to
each dashboard connected to this process; it also publishes the updates whole, once, to the
HUBS group, whose other members (the hubs of other ASGI processes) fold them into their own
dashboards' next delta at once. A dashboard starts from a snapshot: the database's nodes
overlaid with what this hub has sent (``dashboard_snapshot``), numbered like the batches.
Everything received is persisted once per PERSIST_INTERVAL_S.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from console.consumers.groups import FANOUT_INTERVAL_S, HUBS, PERSIST_INTERVAL_S
from console.consumers.wire import (
    CUMULATIVE_STATS,
    GPU_WIRE_FIELDS,
    LIVE_KEYS,
    dashboard_message,
    gpus_as_rows,
    gpus_from_rows,
    newer_reading,
    node_delta,
    node_for_wire,
    off_the_shared_thread,
    snapshot_compact,
)
from fleetagent.selectors import node_snapshot_list
from fleetagent.services import samples_ingest

logger = logging.getLogger(__name__)

# Samples waiting for the database while it is slow: beyond this the oldest are dropped
# (dashboards still get them live) rather than letting memory grow without bound.
PERSIST_BACKLOG_MAX = 200_000


class FleetHub:
    """Collects node updates and flushes them on a timer in the running event loop."""

    def __init__(self) -> None:
        self._changed: dict[int, dict] = {}
        self._to_persist: list[tuple[int, dict]] = []
        self._state_changed: set[int] = set()
        self._sent: dict[int, tuple] = {}
        # What this process's dashboards have been told, per node (whole), and the last batch's number.
        self._wire: dict[int, dict] = {}
        self._seq = 0
        self._refreshed: dict[int, dict] = {}
        self._refresh_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._persist_task: asyncio.Task | None = None
        self._relay_task: asyncio.Task | None = None
        self._dashboards: dict = {}
        self.origin = uuid.uuid4().hex
        self.dropped = 0
        self._publish_failing = False
        # Set once the relay is a member of HUBS on the running loop: before that, batches
        # published by other processes do not reach this process's dashboards.
        self.relay_joined: asyncio.Event | None = None

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            if self._loop is not None and self._loop is not loop:
                # A new event loop (a test's, or a restarted server's): updates gathered for
                # the old loop's dashboards are not this loop's to send.
                self._changed.clear()
                self._state_changed.clear()
                self._dashboards.clear()
                self._sent.clear()
                self._wire.clear()
            self._loop = loop
            self.relay_joined = asyncio.Event()
            self._persist_lock = asyncio.Lock()
            # Two loops: fan-out must never wait behind a slow database write.
            self._refreshed = {}
            self._refresh_task = None
            self._task = loop.create_task(self._run(self._fanout_tick, FANOUT_INTERVAL_S), name="fleet-hub-fanout")
            self._persist_task = loop.create_task(
                self._run(self._persist_once, PERSIST_INTERVAL_S), name="fleet-hub-db"
            )
            self._relay_task = loop.create_task(self._relay(), name="fleet-hub-relay")
            self._to_publish = collections.deque(maxlen=PUBLISH_BACKLOG_MAX)
            self._publish_ready = asyncio.Event()
            self._publish_task = loop.create_task(self._publish(), name="fleet-hub-publish")

    def dashboard_add(self, consumer, *, held: bool = False) -> DashboardOutbox:
        self._ensure_running()
        outbox = self._dashboards[consumer] = DashboardOutbox(consumer, held=held)
        return outbox

    def dashboard_remove(self, consumer) -> None:
        outbox = self._dashboards.pop(consumer, None)
        if outbox is not None:
            outbox.close()

    def _broadcast(self, updates: dict[int, dict]) -> None:
        """One numbered batch of what differs from what the dashboards have, to every dashboard."""
        deltas = [d for d in (node_delta(self._wire.setdefault(i, {}), u) for i, u in updates.items()) if d]
        if not deltas:
            return
        self._seq += 1
        if not self._dashboards:
            return
        # Encoded once; every dashboard of this process gets this same text. Never await a
        # browser here: one slow reader must not delay everyone else's batch.
        text = dashboard_message("nodes", deltas, seq=self._seq)
        for outbox in list(self._dashboards.values()):
            outbox.put(self._seq, text)

    def readings_known(self) -> frozenset[int]:
        """Nodes whose newest readings this hub has sent (a snapshot need not read them from the database)."""
        return frozenset(node_id for node_id, sent in self._wire.items() if sent.get("ts") is not None)

    def dashboard_snapshot(self, nodes: list[dict]) -> tuple[int, str]:
        """Every node (read from the database) as this process's dashboards have it: batch ``seq``.

        Synchronous, so no batch goes out between the overlay and the number: the deltas
        numbered after it apply on top of exactly this.
        """
        entries = [snapshot_compact({**node_for_wire(snap), **self._wire.get(snap["id"], {})}) for snap in nodes]
        return self._seq, dashboard_message("snapshot", entries, seq=self._seq)

    async def _relay(self) -> None:
        """Batches published by other processes (other hubs, beat's sweep) -> our dashboards."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        membership = asyncio.get_running_loop().create_task(self._relay_membership(layer, channel))
        failing = False
        try:
            while True:
                try:
                    message = await layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. Redis restarting: retry; membership is renewed apart
                    if not failing:
                        logger.warning("fleet hub relay: channel layer unavailable (%s); retrying", exc)
                    failing = True
                    await asyncio.sleep(RELAY_RETRY_S)
                    continue
                if failing:
                    logger.warning("fleet hub relay: channel layer back")
                failing = False
                if message.get("origin") != self.origin:
                    try:
                        self._broadcast(relayed_updates(message["text"]))
                    except (KeyError, TypeError, ValueError) as exc:  # a malformed batch must not end the relay
                        logger.warning("fleet hub relay: batch from %s dropped (%r)", message.get("origin"), exc)
        finally:
            membership.cancel()

    async def _relay_membership(self, layer, channel: str) -> None:
        """Join HUBS now and again every RELAY_REJOIN_S, whatever the receive loop sees.

        A Redis restart forgets every group, and the relay's receive may never see an error
        (another consumer's receive can take it), so membership is renewed on a timer: the
        hub is back in its group within RELAY_REJOIN_S of Redis coming back.
        """
        while True:
            try:
                await layer.group_add(HUBS, channel)
                self.relay_joined.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried on the next tick
                logger.warning("fleet hub relay: could not join %s (%s)", HUBS, exc)
            await asyncio.sleep(RELAY_REJOIN_S)

    def sample_submit(self, *, node_id: int, node_name: str, sample: dict) -> None:
        self._ensure_running()
        update = {"id": node_id, "name": node_name, "ts": sample["ts"], "gpus": gpus_as_rows(sample.get("gpus") or [])}
        # Host and job figures go out only when they change (a dashboard keeps what it has):
        # at 625 nodes a second they were a third of every batch.
        # The cumulative job histograms are for /metrics (from the database), not for browsers.
        stats = {k: v for k, v in (sample.get("node") or {}).items() if k not in CUMULATIVE_STATS}
        host = sample.get("host")
        sent = self._sent.get(node_id)
        if sent is None or sent[0] != stats or sent[1] != host:
            update["stats"], update["host"] = stats, host
            self._sent[node_id] = (stats, host)
        pending = self._changed.get(node_id)
        if pending is not None and "stats" in pending and "stats" not in update:
            update["stats"], update["host"] = pending["stats"], pending["host"]  # not sent yet: keep it
        self._changed[node_id] = update
        self._to_persist.append((node_id, sample))
        if len(self._to_persist) > PERSIST_BACKLOG_MAX:
            overflow = len(self._to_persist) - PERSIST_BACKLOG_MAX
            del self._to_persist[:overflow]
            self.dropped += overflow

    def node_state_changed(self, *node_ids: int) -> None:
        """Re-read these nodes (state, reason, last action) and push them with the next batch."""
        self._ensure_running()
        self._state_changed.update(node_ids)

    async def _run(self, step, interval: float) -> None:
        layer = get_channel_layer()
        while True:
            try:
                await asyncio.sleep(interval)
                await step(layer)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the hub must outlive one bad flush
                logger.exception("fleet hub %s failed", step.__name__)

    async def _persist_once(self, layer) -> None:
        # One writer at a time, so a flush() returns only after earlier samples are stored.
        async with self._persist_lock:
            if not self._to_persist:
                return
            batch, self._to_persist = self._to_persist, []
            # Not thread-sensitive: the write must not queue every other consumer's DB call
            # (hello, acks, snapshots) behind it on asgiref's single shared thread.
            changed_ids = await database_sync_to_async(samples_ingest, thread_sensitive=not off_the_shared_thread())(
                batch=batch
            )
            self._state_changed.update(changed_ids)

    async def _fanout_tick(self, layer) -> None:
        await self._fanout_once(layer, wait_refresh=False)

    async def _fanout_once(self, layer, *, wait_refresh: bool = True) -> None:
        refresh, self._state_changed = self._state_changed, set()
        updates, self._changed = self._changed, {}
        if refresh and wait_refresh:
            self._refreshed.update(await self._snapshots(refresh))
        elif refresh:
            # Re-read in the background: after a console restart 625 hellos mark 625 nodes
            # changed, and that read must not hold back everyone's live readings.
            if self._refresh_task is None or self._refresh_task.done():
                self._refresh_task = asyncio.get_running_loop().create_task(self._refresh(refresh))
            else:
                self._state_changed |= refresh  # next time
        refreshed, self._refreshed = self._refreshed, {}
        for snap in refreshed.values():
            update_merge(updates, node_for_wire(snap))
        if updates:
            self._broadcast(updates)
            # Whole, for the other processes' hubs (they make their own dashboards' deltas), by a
            # task of its own: a round trip to Redis with a 200 KB batch must not stretch the
            # fan-out interval for this process's own dashboards.
            self._to_publish.append(dashboard_message("nodes", list(updates.values())))
            self._publish_ready.set()

    async def _snapshots(self, node_ids) -> dict[int, dict]:
        # Readings this hub has live are newer than the stored ones: not read (update_merge keeps the live ones).
        snaps = await database_sync_to_async(node_snapshot_list, thread_sensitive=not off_the_shared_thread())(
            node_ids=sorted(node_ids), readings_known=self.readings_known()
        )
        return {snap["id"]: snap for snap in snaps}

    async def _refresh(self, node_ids) -> None:
        try:
            self._refreshed.update(await self._snapshots(node_ids))
        except Exception:  # noqa: BLE001 - read them again with the next change
            logger.exception("fleet hub: re-reading %d node(s) failed", len(node_ids))
            self._state_changed |= set(node_ids)

    async def _publish(self) -> None:
        """Batches -> HUBS, in order; while Redis is away the oldest are dropped (PUBLISH_BACKLOG_MAX)."""
        layer = get_channel_layer()
        while True:
            await self._publish_ready.wait()
            self._publish_ready.clear()
            while self._to_publish:
                text = self._to_publish.popleft()
                try:
                    await layer.group_send(HUBS, {"type": "fleet.relay", "text": text, "origin": self.origin})
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - our own dashboards got it; other processes catch up
                    if not self._publish_failing:
                        logger.warning("fleet hub: cannot publish to other processes (%s)", exc)
                    self._publish_failing = True
                    await asyncio.sleep(RELAY_RETRY_S)
                else:
                    self._publish_failing = False

    async def flush(self, layer=None, *, persist: bool = True) -> None:
        """Persist (optionally) and fan out now (tests; the loops do this on their own)."""
        layer = layer or get_channel_layer()
        if persist:
            await self._persist_once(layer)
        await self._fanout_once(layer)


# channels_redis forgets nothing on its own (group expiry is a day), but a restarted Redis
# forgets everything: renewing this often bounds how long other processes' batches are missed.
RELAY_REJOIN_S = 2.0
RELAY_RETRY_S = 0.5
# Batches waiting to be published to other processes (2 s at 5 per second).
PUBLISH_BACKLOG_MAX = 10
# Batches waiting for one slow browser (2 s at 5 per second); beyond that its oldest are dropped.
OUTBOX_MAX = 10


class DashboardOutbox:
    """One dashboard's pending batches, sent by its own task in arrival order.

    A slow browser whose oldest batches were dropped sees a gap in ``seq`` and asks for a
    snapshot (``restart``), which replaces every batch it already covers.
    """

    def __init__(self, consumer, *, held: bool = False) -> None:
        self.consumer = consumer
        self.pending: collections.deque[tuple[int, str]] = collections.deque(maxlen=OUTBOX_MAX)
        self.ready = asyncio.Event()
        self.released = asyncio.Event()
        if not held:
            self.released.set()
        self.dropped = 0
        self.task = asyncio.get_running_loop().create_task(self._pump(), name="fleet-dashboard-outbox")

    def put(self, seq: int, text: str) -> None:
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
        self.pending.append((seq, text))
        self.ready.set()

    def restart(self, seq: int, snapshot: str) -> None:
        """Send this snapshot (batch ``seq``) next, then only the batches after it."""
        newer = [item for item in self.pending if item[0] > seq]
        self.pending.clear()
        self.pending.append((seq, snapshot))
        self.pending.extend(newer[1 - OUTBOX_MAX :])  # never pushes the snapshot out
        self.ready.set()
        self.released.set()

    async def _pump(self) -> None:
        await self.released.wait()
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.pending:
                try:
                    await self.consumer.send(self.pending.popleft()[1])
                except Exception:  # noqa: BLE001 - the socket is gone; disconnect() removes us
                    return

    def close(self) -> None:
        self.task.cancel()


def update_merge(pending: dict[int, dict], entry: dict) -> None:
    """Fold a node entry into pending updates: database keys always, readings only if newer."""
    current = pending.get(entry["id"])
    if current is None:
        pending[entry["id"]] = entry
    elif newer_reading(entry, current):
        current.update(entry)
    else:
        current.update({k: v for k, v in entry.items() if k not in LIVE_KEYS})


def relayed_updates(text: str) -> dict[int, dict]:
    """Another process's whole updates (or beat's snapshots) as this hub's pending updates."""
    message = json.loads(text)
    fields = message.get("gpu_fields")
    updates: dict[int, dict] = {}
    for entry in message["nodes"]:
        if fields != list(GPU_WIRE_FIELDS) and entry.get("gpus"):  # a console of another version
            entry["gpus"] = gpus_as_rows(gpus_from_rows(fields, entry["gpus"]))
        update_merge(updates, entry)
    return updates


hub = FleetHub()
