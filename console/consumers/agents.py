"""Websocket endpoint for fleet agents: ``/ws/agent/`` with ``Authorization: Bearer vfn_…``.

The node token travels in a header (never a cookie or the query string, which end up in
logs); a wrong or revoked token is refused before the handshake completes (HTTP 403).
The consumer only routes frames to small handlers; database work is in fleetagent.services.
Every frame is checked by fleetagent.frames first, and counted against the node's rate.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from console.consumers.hub import hub
from console.consumers.wire import off_the_shared_thread
from console.errors import NotFound, VoxfleetError
from fleetagent import frames, protocol
from fleetagent.agent.loopback import EMBEDDED_SCOPE_KEY
from fleetagent.selectors import node_get
from fleetagent.services import (
    node_action_acknowledge,
    node_agent_bye,
    node_agent_connect,
    node_agent_disconnect,
    node_authenticate,
    node_desired_state_reconcile,
    node_frames_refused,
)
from inference.services import (
    CLOSED_REFUSED,
    AudioRefused,
    HostAudio,
    HostClaim,
    JobClosed,
    NotYourJob,
    host_job_done,
    host_job_fail,
    host_job_renew,
    host_job_start,
    job_requeue_unheld,
    jobs_dispatch_waiting,
)

logger = logging.getLogger(__name__)


def _db(fn):
    """database_sync_to_async off asgiref's one shared thread where the database allows it:
    625 hellos after a console restart must not queue one behind the other (nor every ack)."""
    return database_sync_to_async(fn, thread_sensitive=not off_the_shared_thread())


def bearer_token(scope) -> str:
    for name, value in scope.get("headers") or []:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def _hello_register(*, node_id: int, channel_name: str, hello: dict):
    """A checked hello, in one trip to a database thread (625 of them after a console restart):
    the node is registered, the console's desired state kept (fleetagent.services), running jobs
    the agent no longer holds requeued now (an agent that sends no ``jobs`` list, an older one,
    is left to the heartbeat), and jobs waiting for a node dispatched (this one may be the node
    they wait for). Returns the node."""
    node = node_agent_connect(node_id=node_id, channel_name=channel_name, hello=hello)
    node_desired_state_reconcile(node=node, agent_draining=hello["draining"], protocol_version=hello["v"])
    held = hello.get("jobs")
    if isinstance(held, list):
        # Job ids (v1/v2) or [job id, attempt] pairs (v3), as fleetagent.frames checked them.
        job_requeue_unheld(node_name=node.name, held=[j if isinstance(j, int) else tuple(j) for j in held])
    jobs_dispatch_waiting()
    return node


# Frames per second a node may send (a sample a second, acks, bye) and the burst it may send
# at once: an agent flushes its buffer (fleetagent.agent.client.BUFFER_MAX, 600 samples)
# after an outage. Kept per node, not per socket, so reconnecting does not refill it.
FRAME_RATE_PER_S = 5.0
FRAME_BURST = 700
# Refusals are written to the node at most this often (a flood must not become a write flood).
REFUSALS_SAVE_EVERY_S = 1.0
# Job frames (protocol v3) have a budget of their own: a host sends a start and a done per job
# and a renewal every LEASE_RENEW_S, and 5 frames/s would cap it at about two jobs a second.
JOB_FRAME_RATE_PER_S = 50.0
JOB_FRAME_BURST = 500
# Binary audio frames are counted in bytes, not frames: 16 MiB/s is about 170 streams of
# 24 kHz speech in real time; a burst of 64 MiB holds one whole job sent at once.
AUDIO_BYTES_PER_S = 16 * 1024 * 1024
AUDIO_BURST_BYTES = 64 * 1024 * 1024
_frame_rates: dict[int, frames.FrameRate] = {}
_job_frame_rates: dict[int, frames.FrameRate] = {}
_audio_rates: dict[int, frames.FrameRate] = {}


def _rate(rates: dict[int, frames.FrameRate], node_id: int, *, per_s: float, burst: int) -> frames.FrameRate:
    rate = rates.get(node_id)
    if rate is None:
        rate = rates[node_id] = frames.FrameRate(per_s=per_s, burst=burst)
    return rate


def _frame_rate(node_id: int) -> frames.FrameRate:
    return _rate(_frame_rates, node_id, per_s=FRAME_RATE_PER_S, burst=FRAME_BURST)


class AgentConsumer(AsyncWebsocketConsumer):
    node = None
    registered = False
    version = protocol.PROTOCOL_VERSION
    refused_unsaved = 0
    refused_message = ""
    refused_saved_at = 0.0
    audio: HostAudio | None = None  # a v3 host's audio streams (inference.services.hosts)

    async def dispatch(self, message) -> None:
        # Channels runs close_old_connections on asgiref's one shared thread before every
        # message. A sample touches no database, and at 625 frames/s those hops queue every
        # frame behind each other; the handlers' own database_sync_to_async calls close old
        # connections themselves, before and after.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        embedded_node_id = self.scope.get(EMBEDDED_SCOPE_KEY)
        if embedded_node_id is not None:
            # Set only by fleetagent.agent.loopback inside this process, never by a server.
            self.node = await database_sync_to_async(node_get)(node_id=embedded_node_id)
            await self.accept()
            return
        try:
            self.node = await _db(node_authenticate)(token=bearer_token(self.scope))
        except NotFound:
            logger.warning("agent refused: unknown or revoked node token from %s", self.scope.get("client"))
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        await self.accept()

    async def disconnect(self, code) -> None:
        if self.audio is not None:
            await self.audio.discard_all()
        if self.node is not None:
            await self._refusals_save()
        if self.node is not None and self.registered:
            await _db(node_agent_disconnect)(node_id=self.node.pk, channel_name=self.channel_name)
            hub.node_state_changed(self.node.pk)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.node is None:
            return
        if bytes_data is not None and self.audio is not None:
            await self.on_audio(bytes_data)
            return
        rate = _frame_rate(self.node.pk)
        if not rate.take():
            await self._refuse_flood(f"more than {FRAME_RATE_PER_S:g} frames/s (burst {FRAME_BURST})")
            return
        try:
            message = frames.agent_frame_parse(text_data if text_data is not None else bytes_data)
            if message["type"] != protocol.HELLO and not self.registered:
                raise frames.FrameRefused("say hello first", reason=frames.REASON_ORDER, fatal=True)
            if message["type"] in frames.JOB_FRAME_TYPES and self.audio is None:
                raise frames.FrameRefused(
                    f"job frames need a protocol {protocol.JOB_FRAMES_FROM} hello", reason=frames.REASON_ORDER
                )
        except frames.FrameRefused as refusal:
            await self._refuse(refusal)
            return
        if message["type"] in frames.JOB_FRAME_TYPES:
            rate.refund()  # counted against the job-frame budget instead
            job_rate = _rate(_job_frame_rates, self.node.pk, per_s=JOB_FRAME_RATE_PER_S, burst=JOB_FRAME_BURST)
            if not job_rate.take():
                await self._refuse_flood(f"more than {JOB_FRAME_RATE_PER_S:g} job frames/s (burst {JOB_FRAME_BURST})")
                return
        handler = getattr(self, f"on_{message['type']}")
        await handler(message)

    async def _refuse_flood(self, message: str) -> None:
        refusal = frames.FrameRefused(message, reason=frames.REASON_RATE, fatal=True)
        await self._refuse(refusal, close_code=protocol.CLOSE_RATE_LIMITED)

    async def _refuse(
        self,
        refusal: frames.FrameRefused,
        *,
        close_code: int = protocol.CLOSE_BAD_PROTOCOL,
        code: str = "bad_frame",
        **fields,
    ) -> None:
        """Answer, count and (for a fatal one) close; nothing of the frame is used."""
        self.refused_unsaved += 1
        self.refused_message = f"{refusal.reason}: {refusal.message}"
        await self.send(
            protocol.message_encode(protocol.ERROR, version=self.version, code=code, message=refusal.message, **fields)
        )
        if refusal.fatal or time.monotonic() - self.refused_saved_at >= REFUSALS_SAVE_EVERY_S:
            await self._refusals_save()
        if refusal.fatal:
            await self.close(code=close_code)

    async def _refusals_save(self) -> None:
        if not self.refused_unsaved:
            return
        count, self.refused_unsaved = self.refused_unsaved, 0
        self.refused_saved_at = time.monotonic()
        await _db(node_frames_refused)(node_id=self.node.pk, count=count, message=self.refused_message)
        hub.node_state_changed(self.node.pk)

    async def on_hello(self, message: dict) -> None:
        self.version = message["v"]
        if self.version >= protocol.JOB_FRAMES_FROM and self.audio is None:
            self.audio = HostAudio(node_id=self.node.pk, run_sync=_db)
        self.node = await _db(_hello_register)(node_id=self.node.pk, channel_name=self.channel_name, hello=message)
        self.registered = True
        hub.node_state_changed(self.node.pk)
        await self.send(
            protocol.message_encode(
                protocol.WELCOME,
                version=self.version,
                node=self.node.name,
                sample_interval_s=1.0,
                protocol=self.version,
                draining=self.node.drained,
            )
        )

    async def on_sample(self, message: dict) -> None:
        hub.sample_submit(node_id=self.node.pk, node_name=self.node.name, sample=message)

    async def on_ack(self, message: dict) -> None:
        try:
            await _db(node_action_acknowledge)(
                node_id=self.node.pk,
                command_id=message["command_id"],
                ok=message["ok"],
                detail=message["detail"],
                error=message["error"],
            )
        except VoxfleetError as exc:
            await self.send(
                protocol.message_encode(protocol.ERROR, version=self.version, code=exc.code, message=exc.message)
            )
            return
        hub.node_state_changed(self.node.pk)

    async def on_bye(self, message: dict) -> None:
        if self.registered:
            await database_sync_to_async(node_agent_bye)(
                node_id=self.node.pk, channel_name=self.channel_name, reason=str(message.get("reason") or "")
            )
            hub.node_state_changed(self.node.pk)
        await self.close()

    # --- jobs of a host that holds no database (protocol v3; the work is inference.services.hosts)
    async def _not_your_job(self, exc: NotYourJob) -> None:
        """Refused like a bad frame (answered, counted on the node), but never fatal: it may be a race."""
        refusal = frames.FrameRefused(exc.message, reason=frames.REASON_NOT_YOURS)
        await self._refuse(refusal, code=exc.code, job_id=exc.job_id, attempt=exc.attempt)

    async def _job_closed(self, job_id: int, attempt: int, status: str) -> None:
        await self.send(
            protocol.message_encode(
                protocol.JOB_CLOSED, version=self.version, job_id=job_id, attempt=attempt, status=status
            )
        )

    async def on_job_start(self, message: dict) -> None:
        job_id, attempt = message["job_id"], message["attempt"]
        try:
            claim = await _db(host_job_start)(node_id=self.node.pk, job_id=job_id, attempt=attempt)
        except NotYourJob as exc:
            await self._not_your_job(exc)
            claim = HostClaim(ok=False, reason=exc.code)
        await self.send(
            protocol.message_encode(
                protocol.JOB_CLAIM,
                version=self.version,
                job_id=job_id,
                attempt=attempt,
                ok=claim.ok,
                reason=claim.reason,
            )
        )
        if claim.ok:
            self.audio.claimed(job_id, attempt)

    async def on_job_renew(self, message: dict) -> None:
        renewal = await _db(host_job_renew)(node_id=self.node.pk, jobs=message["jobs"])
        for job_id, attempt in renewal.closed:
            # Ended meanwhile (cancelled, past its deadline): the host drops it.
            await self.audio.discard((job_id, attempt))
            await self._job_closed(job_id, attempt, CLOSED_REFUSED)
        for exc in renewal.not_yours:
            await self.audio.discard((exc.job_id, exc.attempt))
            await self._not_your_job(exc)

    async def on_job_done(self, message: dict) -> None:
        writer, claimed = self.audio.take(message["job_id"], message["attempt"])
        await self._job_report(
            message,
            writer,
            host_job_done,
            writer=writer,
            claimed=claimed,
            audio_bytes=message["audio_bytes"],
            gpu_seconds=message["gpu_seconds"],
            audio_seconds=message["audio_seconds"],
            engine_version=message["engine_version"],
        )

    async def on_job_fail(self, message: dict) -> None:
        writer, _ = self.audio.take(message["job_id"], message["attempt"])
        await self._job_report(message, writer, host_job_fail, code=message["code"], message=message["message"])

    async def _job_report(self, frame: dict, partial, report, **fields) -> None:
        """A job_done or job_fail: the service closes the job; the attempt's partial audio goes."""
        job_id, attempt = frame["job_id"], frame["attempt"]
        try:
            status = await _db(report)(node_id=self.node.pk, job_id=job_id, attempt=attempt, **fields)
        except NotYourJob as exc:
            await self._not_your_job(exc)
            status = CLOSED_REFUSED
        finally:
            if partial is not None:
                await asyncio.to_thread(partial.discard)
        await self._job_closed(job_id, attempt, status)

    async def on_audio(self, data: bytes) -> None:
        if not _rate(_audio_rates, self.node.pk, per_s=AUDIO_BYTES_PER_S, burst=AUDIO_BURST_BYTES).take(len(data)):
            await self._refuse_flood(f"more than {AUDIO_BYTES_PER_S} bytes/s of audio (burst {AUDIO_BURST_BYTES})")
            return
        try:
            await self.audio.receive(frames.audio_frame_parse(data))
        except frames.FrameRefused as refusal:
            await self._refuse(refusal)
        except AudioRefused as exc:
            await self._refuse(frames.FrameRefused(exc.message))
        except NotYourJob as exc:
            await self._not_your_job(exc)
        except JobClosed as exc:
            await self._job_closed(exc.job_id, exc.attempt, CLOSED_REFUSED)

    # Channel-layer messages (from fleetagent.services.node_action_request).
    async def agent_command(self, event: dict) -> None:
        await self.send(
            protocol.message_encode(
                protocol.COMMAND, version=self.version, command_id=event["command_id"], action=event["action"]
            )
        )
