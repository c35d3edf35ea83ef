"""The agent's websocket loop: hello, a sample every second, commands in, acks out.

One socket to the console. While it is down the agent keeps sampling into a bounded
buffer (oldest dropped first) and reconnects with exponential backoff and jitter; on
reconnect it says hello again and sends what it buffered, oldest first.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import deque
from typing import TYPE_CHECKING

import websockets
from django.db import DatabaseError
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fleetagent import protocol
from fleetagent.agent.collect import CpuCollector, NvmlCollector, host_read
from inference.listeners import jobs_held

if TYPE_CHECKING:
    from fleetagent.agent.runtime import NodeRuntime
    from fleetagent.agent.stats import JobStats

logger = logging.getLogger(__name__)

BUFFER_MAX = 600  # ten minutes of 1 Hz samples
BACKOFF_INITIAL_S = 0.5
# Capped low so a console or Redis restart has every agent back within a few seconds; the
# jitter spreads 625 hosts' reconnects over the interval instead of one thundering herd.
BACKOFF_MAX_S = 3.0


def backoff_delay(backoff: float) -> float:
    """The wait before the next attempt: between half and all of the current backoff."""
    return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


def agent_ws_url(console_url: str) -> str:
    """http(s)://host[:port] -> ws(s)://host[:port]/ws/agent/ (a ws URL is used as given)."""
    url = console_url.rstrip("/")
    if url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    elif url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    return url if url.endswith("/ws/agent") else url + "/ws/agent/"


class AgentClient:
    def __init__(
        self,
        *,
        console_url: str,
        token: str,
        collector: NvmlCollector | CpuCollector,
        runtime: NodeRuntime,
        stats: JobStats,
        node_name: str = "",
        engine: str = "",
        interval_s: float = 1.0,
        buffer_max: int = BUFFER_MAX,
        connect=None,
    ) -> None:
        self.url = agent_ws_url(console_url)
        # connect() -> async context manager yielding a socket with send/recv/async-iteration;
        # websockets by default, the in-process loopback for the embedded local agent.
        self._connect = connect or self._ws_connect
        self.token = token
        self.collector = collector
        self.runtime = runtime
        self.stats = stats
        self.node_name = node_name
        self.engine = engine
        self.interval_s = interval_s
        self.buffer: deque[str] = deque(maxlen=buffer_max)
        self.acks: deque[str] = deque()
        self.dropped = 0
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_refusal = ""
        self.last_backoff_s = 0.0
        self._seq = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    # --- samples -------------------------------------------------------------------------
    async def sample_build(self) -> dict:
        gpus = await asyncio.to_thread(self.collector.read)
        host = await asyncio.to_thread(host_read)
        try:
            running, queued = await self.runtime.counts()
        except DatabaseError as exc:
            # A database hiccup must not silence the heartbeat: report the hardware anyway.
            logger.warning("job counts unavailable: %s", exc)
            running, queued = self.stats.jobs_running, self.stats.jobs_queued
        self.stats.jobs_queued = queued
        self._seq += 1
        return {
            "seq": self._seq,
            "ts": time.time(),
            "gpus": gpus,
            "host": host.as_dict(),
            "node": self.stats.snapshot(running=running, queued=queued, draining=self.runtime.draining),
        }

    def _enqueue(self, text: str) -> None:
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
        self.buffer.append(text)
        self._wake.set()

    async def _sampler(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                sample = await self.sample_build()
                self._enqueue(protocol.message_encode(protocol.SAMPLE, **sample))
            except Exception:  # noqa: BLE001 - a failed reading must not stop the heartbeat loop
                logger.exception("sampling failed")
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # --- connection ----------------------------------------------------------------------
    def hello(self) -> str:
        return protocol.message_encode(
            protocol.HELLO,
            node=self.node_name,
            hostname=socket.gethostname(),
            agent_version=protocol.AGENT_VERSION,
            engine=self.engine,
            nvml=self.collector.nvml,
            nvml_reason=self.collector.reason,
            gpu_model=self.collector.gpu_model,
            gpus=[gpu.as_dict() for gpu in self.collector.gpus],
            draining=self.runtime.draining,
            # Only a process that runs the node's jobs knows which it holds (not --no-worker).
            **({"jobs": jobs_held()} if self.runtime.runs_jobs else {}),
        )

    def _ws_connect(self):
        return websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
            ping_interval=20,
            max_queue=64,
        )

    async def run(self) -> None:
        """Run until stop(): sampling continues across disconnects."""
        if not self.collector.nvml:
            logger.warning("fleet agent in CPU mode: %s", self.collector.reason)
        sampler = asyncio.create_task(self._sampler(), name="agent-sampler")
        backoff = BACKOFF_INITIAL_S
        try:
            while not self._stop.is_set():
                try:
                    async with self._connect() as ws:
                        await ws.send(self.hello())
                        welcome = protocol.message_decode(await ws.recv(), allowed=protocol.CONSOLE_TYPES)
                        if welcome["type"] != protocol.WELCOME:
                            raise ConnectionError(f"console refused the agent: {welcome.get('message')}")
                        self.node_name = welcome.get("node", self.node_name)
                        await self._desired_state_apply(welcome)
                        self.connects += 1
                        self.last_refusal = ""
                        backoff = BACKOFF_INITIAL_S
                        logger.info("connected to %s as node %s", self.url, self.node_name)
                        self.connected.set()
                        try:
                            await self._session(ws)
                        finally:
                            self.connected.clear()
                except asyncio.CancelledError:
                    raise
                except InvalidStatus as exc:
                    self.last_refusal = f"console answered HTTP {exc.response.status_code} (wrong or revoked token?)"
                    logger.error("agent refused: %s", self.last_refusal)
                except (OSError, ConnectionClosed, ConnectionError, TimeoutError, protocol.ProtocolError) as exc:
                    logger.warning("console connection lost: %s", exc)
                if self._stop.is_set():
                    break
                delay = backoff_delay(backoff)
                self.last_backoff_s = delay
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                except TimeoutError:
                    pass
        finally:
            sampler.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(sampler, *self._tasks, return_exceptions=True)

    async def _desired_state_apply(self, welcome: dict) -> None:
        """The console owns drained/not drained (protocol v2): take its word before sampling on."""
        want = welcome.get("draining")
        if not isinstance(want, bool) or want == self.runtime.draining:
            return
        logger.info("console wants this node %s", "drained" if want else "taking jobs")
        await (self.runtime.drain() if want else self.runtime.resume())

    async def _session(self, ws) -> None:
        sender = asyncio.create_task(self._send_loop(ws))
        receiver = asyncio.create_task(self._recv_loop(ws))
        stopper = asyncio.create_task(self._stop.wait())
        done, pending = await asyncio.wait({sender, receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if stopper in done:
            try:
                await ws.send(protocol.message_encode(protocol.BYE, reason="agent stopping"))
            except ConnectionClosed:
                pass
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()

    async def _send_loop(self, ws) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.acks or self.buffer:
                # Acks first: an ops action waits on them; a sample left in the buffer is resent.
                queue = self.acks if self.acks else self.buffer
                text = queue[0]
                await ws.send(text)
                if queue and queue[0] is text:
                    queue.popleft()

    async def _recv_loop(self, ws) -> None:
        async for raw in ws:
            message = protocol.message_decode(raw, allowed=protocol.CONSOLE_TYPES)
            if message["type"] == protocol.COMMAND:
                task = asyncio.create_task(self._command(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif message["type"] == protocol.ERROR:
                logger.error("console error: %s", message.get("message"))

    async def _command(self, message: dict) -> None:
        action = message["action"]
        logger.info("ops command %s (#%s)", action, message["command_id"])
        try:
            detail = await self.runtime.run_action(action)
            ack = {"ok": True, "detail": detail, "error": ""}
        except Exception as exc:  # noqa: BLE001 - reported to the console in the ack
            logger.exception("ops command %s failed", action)
            ack = {"ok": False, "detail": {}, "error": f"{type(exc).__name__}: {exc}"}
        self.acks.append(protocol.message_encode(protocol.ACK, command_id=message["command_id"], action=action, **ack))
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
