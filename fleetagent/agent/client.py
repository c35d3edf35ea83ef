"""The agent's websocket loop: hello, a sample every second, commands in, acks out.

One socket to the console. While it is down the agent keeps sampling into a bounded
buffer (oldest dropped first) and reconnects with exponential backoff and jitter; on
reconnect it says hello again and sends what it buffered, oldest first.

Job frames (protocol v3, a GPU host's ``fleetagent.agent.host``) travel on the same socket but
only within one connection: a frame for a connection that dropped is never sent on the next
one (the job it belongs to stops; the console's lease decides), so each is handed in with the
connection's ``session`` number. Other threads (the host's Celery worker) hand frames to this
client's loop with ``asyncio.run_coroutine_threadsafe`` (``ConsoleLink``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fleetagent import protocol
from fleetagent.agent.collect import CpuCollector, NvmlCollector, host_read

if TYPE_CHECKING:
    from fleetagent.agent.ops import OpsRuntime
    from fleetagent.agent.stats import JobStats

logger = logging.getLogger(__name__)

BUFFER_MAX = 600  # ten minutes of 1 Hz samples
BACKOFF_INITIAL_S = 0.5
# Capped low so a console or Redis restart has every agent back within a few seconds; the
# jitter spreads 625 hosts' reconnects over the interval instead of one thundering herd.
BACKOFF_MAX_S = 3.0


class JobLinkLost(ConnectionError):
    """The connection a job frame belonged to is gone (or was never up)."""


class AgentRefused(ConnectionError):
    """The console refused this agent's credentials (HTTP 403 or 401 on the websocket)."""


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


def console_http_url(console_url: str) -> str:
    """The console's HTTP(S) base for a URL given as http(s):// or ws(s)://…[/ws/agent/]."""
    url = console_url.rstrip("/").removesuffix("/ws/agent")
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    return url


class AgentClient:
    def __init__(
        self,
        *,
        console_url: str,
        token: str,
        collector: NvmlCollector | CpuCollector,
        runtime: OpsRuntime,
        stats: JobStats,
        node_name: str = "",
        engine: str = "",
        interval_s: float = 1.0,
        buffer_max: int = BUFFER_MAX,
        connect=None,
        stop_on_refusal: bool = False,
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
        # A host started by hand stops on a wrong token (AgentRefused) instead of retrying it
        # (before its first connection: a console that refuses later is retried).
        self.stop_on_refusal = stop_on_refusal
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
        self.version = runtime.protocol_version
        # The number of the current connection (after its welcome), 0 before the first; job
        # frames name it and are dropped with their connection.
        self.session = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._job_out: deque[tuple[int, str | bytes, asyncio.Future | None]] = deque()
        self._replies: dict[tuple, asyncio.Future] = {}

    # --- samples -------------------------------------------------------------------------
    async def sample_build(self) -> dict:
        gpus = await asyncio.to_thread(self.collector.read)
        host = await asyncio.to_thread(host_read)
        running, queued = await self.runtime.sample_counts()
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
                self._enqueue(protocol.message_encode(protocol.SAMPLE, version=self.version, **sample))
            except Exception:  # noqa: BLE001 - a failed reading must not stop the heartbeat loop
                logger.exception("sampling failed")
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # --- connection ----------------------------------------------------------------------
    def hello(self) -> str:
        return protocol.message_encode(
            protocol.HELLO,
            version=self.version,
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
            **({"jobs": self.runtime.jobs_held()} if self.runtime.runs_jobs else {}),
        )

    def _ws_connect(self):
        return websockets.connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=10,
            ping_interval=20,
            max_queue=64,
            # No permessage-deflate: PCM audio hardly compresses, and zlib on every frame costs
            # the host and the console CPU (about 3 ms for a sentence of audio) on the job's path.
            compression=None,
        )

    async def run(self) -> None:
        """Run until stop(): sampling continues across disconnects."""
        self.loop = asyncio.get_running_loop()
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
                        self.runtime.node_name = self.node_name
                        await self._desired_state_apply(welcome)
                        self.connects += 1
                        self.session += 1
                        self.last_refusal = ""
                        backoff = BACKOFF_INITIAL_S
                        logger.info("connected to %s as node %s", self.url, self.node_name)
                        self.connected.set()
                        try:
                            await self._session(ws)
                        finally:
                            self.connected.clear()
                            self._jobs_link_drop()
                except asyncio.CancelledError:
                    raise
                except InvalidStatus as exc:
                    self.last_refusal = f"console answered HTTP {exc.response.status_code} (wrong or revoked token?)"
                    logger.error("agent refused: %s", self.last_refusal)
                    if self.stop_on_refusal and not self.connects and exc.response.status_code in (401, 403):
                        raise AgentRefused(self.last_refusal) from exc
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
        renewer = asyncio.create_task(self._renew_loop())
        stopper = asyncio.create_task(self._stop.wait())
        done, pending = await asyncio.wait({sender, receiver, renewer, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if stopper in done:
            try:
                await ws.send(protocol.message_encode(protocol.BYE, version=self.version, reason="agent stopping"))
            except ConnectionClosed:
                pass
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()

    async def _send_loop(self, ws) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.acks or self._job_out or self.buffer:
                if self.acks or not self._job_out:
                    # Acks first: an ops action waits on them; a sample left in the buffer is resent.
                    queue = self.acks if self.acks else self.buffer
                    text = queue[0]
                    await ws.send(text)
                    if queue and queue[0] is text:
                        queue.popleft()
                    continue
                # Then job frames, in the order handed in (job_start, audio, job_done).
                session, data, sent = self._job_out.popleft()
                if session != self.session:
                    if sent is not None and not sent.done():
                        sent.set_exception(JobLinkLost("the connection of this job frame is gone"))
                    continue
                await ws.send(data)
                if sent is not None and not sent.done():
                    sent.set_result(None)

    async def _recv_loop(self, ws) -> None:
        async for raw in ws:
            message = protocol.message_decode(raw, allowed=protocol.CONSOLE_TYPES)
            if message["type"] == protocol.COMMAND:
                task = asyncio.create_task(self._command(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif message["type"] in (protocol.JOB_CLAIM, protocol.JOB_CLOSED):
                job = (message.get("job_id"), message.get("attempt"))
                waiter = self._replies.pop((message["type"], *job), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                elif message["type"] == protocol.JOB_CLOSED:
                    # Unasked: the job ended on the console (cancelled, past its deadline): it stops here.
                    self.runtime.job_ended_elsewhere(*job, outcome=str(message.get("status") or "refused"))
            elif message["type"] == protocol.ERROR:
                logger.error("console error: %s (%s)", message.get("message"), message.get("code"))
                if message.get("job_id") is not None:
                    # A frame about a job refused (not_your_job): that job stops here.
                    self.runtime.job_ended_elsewhere(message.get("job_id"), message.get("attempt"), outcome="refused")

    async def _command(self, message: dict) -> None:
        action = message["action"]
        logger.info("ops command %s (#%s)", action, message["command_id"])
        try:
            detail = await self.runtime.run_action(action)
            ack = {"ok": True, "detail": detail, "error": ""}
        except Exception as exc:  # noqa: BLE001 - reported to the console in the ack
            logger.exception("ops command %s failed", action)
            ack = {"ok": False, "detail": {}, "error": f"{type(exc).__name__}: {exc}"}
        self.acks.append(
            protocol.message_encode(
                protocol.ACK, version=self.version, command_id=message["command_id"], action=action, **ack
            )
        )
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # --- job frames (v3): called on this client's loop (ConsoleLink hands them over) ----------
    def _session_check(self, session: int) -> None:
        if not self.connected.is_set() or session != self.session:
            raise JobLinkLost("not connected to the console" if not self.connected.is_set() else "reconnected since")

    async def job_send(self, data: str | bytes, *, session: int) -> None:
        """Send one job frame on connection ``session``, in order; JobLinkLost if it is gone."""
        self._session_check(session)
        sent = asyncio.get_running_loop().create_future()
        self._job_out.append((session, data, sent))
        self._wake.set()
        await sent

    async def job_request(
        self, text: str, *, reply: tuple, session: int, timeout_s: float, on_sent: Callable[[], None] | None = None
    ) -> dict | None:
        """Send ``text`` and wait for the console's answer ``reply`` = (type, job_id, attempt).

        None when none came within ``timeout_s``; JobLinkLost when the connection went.
        ``on_sent`` is called once the frame has left.
        """
        self._session_check(session)
        waiter = asyncio.get_running_loop().create_future()
        self._replies[reply] = waiter
        try:
            await self.job_send(text, session=session)
            if on_sent is not None:
                on_sent()
            return await asyncio.wait_for(asyncio.shield(waiter), timeout=timeout_s)
        except TimeoutError:
            return None
        finally:
            if self._replies.get(reply) is waiter:
                del self._replies[reply]

    def _jobs_link_drop(self) -> None:
        """The connection went: its unsent job frames and unanswered requests fail now."""
        lost = JobLinkLost("the console connection dropped")
        while self._job_out:
            _session, _data, sent = self._job_out.popleft()
            if sent is not None and not sent.done():
                sent.set_exception(lost)
        replies, self._replies = self._replies, {}
        for waiter in replies.values():
            if not waiter.done():
                waiter.set_exception(lost)
        self.runtime.link_lost()

    async def _renew_loop(self) -> None:
        """Lease renewal (v3): every LEASE_RENEW_S while this process holds jobs."""
        while True:
            await asyncio.sleep(protocol.LEASE_RENEW_S)
            leases = self.runtime.job_leases()
            if leases:
                frame = protocol.message_encode(protocol.JOB_RENEW, version=self.version, jobs=leases)
                self._job_out.append((self.session, frame, None))
                self._wake.set()
