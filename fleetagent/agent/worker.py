"""The Celery worker of a GPU host, built without Django, and the one job it runs (protocol v3).

The node's queue delivers ``RUN_JOB_TASK`` with kwargs ``{"job": JOB}`` (``fleetagent.protocol``).
``JobRunner.run`` checks the deadline, asks the console to claim the job over the agent's
websocket (``job_start`` -> ``job_claim``) and, while the answer travels, fetches a cloned
voice's prompt audio (cached per voice version) and has the engine make the first piece
(``EngineRun``; nothing is sent, or reported, before the claim is granted). It then sends each
piece as binary audio frames as soon as it is produced, then ``job_done`` or ``job_fail``, and
waits (bounded) for the console's ``job_closed``. The console alone writes the output and
settles or releases the tokens.

A message is never acked away unrun: not connected, or no claim answer within
CLAIM_TIMEOUT_S, and the task is retried later on the same queue (``acks_late`` and
reject-on-worker-lost cover a worker that dies); a redelivered message whose job is no longer
this node's is answered ``job_claim ok: false`` and dropped. A connection that drops while the
job runs stops it: the console's lease requeues it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery, signals
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from console.errors import VoxfleetError
from fleetagent import protocol
from fleetagent.agent.client import JobLinkLost
from fleetagent.agent.host import REQUEUED, ConsoleLink, HeldJob, HostRuntime
from fleetagent.agent.prompts import PromptCache, prompt_audio_fetch
from inference.audio.encode import pcm16
from inference.engines import SynthesisEngine, SynthesisRequest, VoiceSpec, engine_get, engine_version_label
from inference.text import Instruction

logger = logging.getLogger(__name__)

# How long the console has to answer a job_start (else the message is retried later).
CLAIM_TIMEOUT_S = 5.0
# How long a job_done / job_fail waits for the console's job_closed.
CLOSE_TIMEOUT_S = 10.0
# A message that could not be claimed comes back after this long.
RETRY_DELAY_S = 2.0
# PCM bytes per audio frame (the header counts against AUDIO_FRAME_MAX; whole samples only).
AUDIO_CHUNK_BYTES = (protocol.AUDIO_FRAME_MAX - protocol.AUDIO_HEADER.size) // 2 * 2


class RetryLater(Exception):
    """The job could not be claimed now (no console connection, no answer, draining)."""


class NotAJob(ValueError):
    """A message on the node's queue without a job's identity (it cannot even be reported)."""


@dataclass(frozen=True)
class JobRef:
    job_id: int
    attempt: int
    deadline_ts: float


def job_ref(job: dict) -> JobRef:
    """The identity of a JOB message; NotAJob when it has none."""
    try:
        return JobRef(job_id=int(job["job_id"]), attempt=int(job["attempt"]), deadline_ts=float(job["deadline_ts"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise NotAJob(f"not a job message: {exc!r}") from exc


def synthesis_request(job: dict, *, prompt_audio_path: str | None) -> SynthesisRequest:
    """The engine's request from a JOB message (``fleetagent.protocol``)."""
    voice = job["voice"]
    instruction = job.get("instruction")
    return SynthesisRequest(
        text=str(job["text"]),
        language=str(job["language"]),
        voice=VoiceSpec(
            key=str(voice["key"]),
            language=str(voice["language"]),
            gender=str(voice["gender"]),
            profile=voice.get("profile") or None,
            prompt_audio_path=prompt_audio_path,
            prompt_transcript=voice.get("prompt_transcript") or None,
            display_name=str(voice.get("display_name") or ""),
        ),
        instruction=Instruction.from_dict(instruction) if instruction else None,
        seed=int(job["seed"]),
        speed=float(job.get("speed", 1.0)),
    )


def _stats_outcome(closed: str) -> str:
    # The console's word as JobStats counts it (a refused report: the job was not ours any more).
    return "discarded" if closed == "refused" else closed


class JobRunner:
    """Runs one JOB at a time per worker thread; every shared part (link, runtime, cache) is thread-safe."""

    def __init__(
        self,
        *,
        runtime: HostRuntime,
        link: ConsoleLink,
        prompts: PromptCache,
        console_http: str,
        token: str,
        engine: Callable[[], SynthesisEngine] = engine_get,
    ) -> None:
        self.runtime = runtime
        self.link = link
        self.prompts = prompts
        self.console_http = console_http
        self.token = token
        self.engine = engine

    def run(self, job: dict) -> str:
        """Run a JOB message; the outcome (succeeded, failed, refused, dropped, expired, requeued…).

        RetryLater when it could not be claimed now; the caller puts the message back. The
        engine starts while the console answers the claim (its first piece waits for the
        answer, and is thrown away unsent if the job is not this node's): the claim's round
        trip is not added to the job's time.
        """
        ref = job_ref(job)
        if time.time() >= ref.deadline_ts:
            logger.info("job %s (attempt %s) is past its deadline; dropped", ref.job_id, ref.attempt)
            return "expired"
        if self.runtime.draining:
            raise RetryLater("the node is drained")
        self.runtime.waiting(+1)
        synthesis: EngineRun | None = None
        try:
            session = self.link.session()
            answer = self.link.request_begin(
                protocol.JOB_START,
                reply=protocol.JOB_CLAIM,
                session=session,
                timeout_s=CLAIM_TIMEOUT_S,
                job_id=ref.job_id,
                attempt=ref.attempt,
            )
            synthesis = EngineRun.start(lambda: self._request(job, ref), self.engine)
            claim = self.link.request_end(answer, timeout_s=CLAIM_TIMEOUT_S)
        except JobLinkLost as exc:
            if synthesis is not None:
                synthesis.close()
            raise RetryLater(str(exc)) from exc
        finally:
            self.runtime.waiting(-1)
        if claim is None or not claim.get("ok"):
            synthesis.close()
            if claim is None:
                raise RetryLater(f"no job_claim within {CLAIM_TIMEOUT_S:.0f} s")
            logger.info("job %s (attempt %s) is not ours: %s; dropped", ref.job_id, ref.attempt, claim.get("reason"))
            return "dropped"
        held = self.runtime.hold(job_id=ref.job_id, attempt=ref.attempt, session=session)
        started = time.perf_counter()
        outcome, rtf = REQUEUED, None
        try:
            outcome, rtf = self._run_held(synthesis, ref, held)
        finally:
            synthesis.close()
            self.runtime.release(held, outcome=outcome)
            self.runtime.stats.job_finished(ref.job_id, _stats_outcome(outcome), time.perf_counter() - started, rtf)
        return outcome

    def _request(self, job: dict, ref: JobRef) -> SynthesisRequest:
        """The engine's request, with a cloned voice's prompt audio fetched (or from the cache)."""
        return synthesis_request(job, prompt_audio_path=self._prompt_path(job, ref))

    def _prompt_path(self, job: dict, ref: JobRef) -> str | None:
        voice = job["voice"]
        if not voice.get("has_prompt_audio"):
            return None
        path = self.prompts.get(
            key=str(voice["key"]),
            version=int(voice["version"]),
            fetch=lambda: prompt_audio_fetch(console_http=self.console_http, token=self.token, job_id=ref.job_id),
        )
        return str(path)

    def _run_held(self, synthesis: EngineRun, ref: JobRef, held: HeldJob) -> tuple[str, float | None]:
        offset = 0
        audio_seconds = 0.0
        try:
            while not held.stop.is_set():
                if time.time() >= ref.deadline_ts:
                    raise VoxfleetError("The job ran past its deadline on the node.", code="job_timeout")
                piece = synthesis.next()
                if piece is None:
                    break
                pcm = pcm16(piece.samples)
                for start in range(0, len(pcm), AUDIO_CHUNK_BYTES):
                    if held.stop.is_set():
                        break
                    chunk = pcm[start : start + AUDIO_CHUNK_BYTES]
                    frame = protocol.audio_frame_encode(
                        job_id=ref.job_id,
                        attempt=ref.attempt,
                        sample_rate=piece.sample_rate,
                        offset=offset,
                        pcm=chunk,
                    )
                    self.link.send(frame, session=held.session)
                    offset += len(chunk)
                audio_seconds += piece.duration_s
            if held.stop.is_set():
                logger.info("job %s stopped: %s", ref.job_id, held.why)
                return held.outcome, None
            if offset == 0:
                raise VoxfleetError("The engine produced no audio.", code="engine_error")
        except JobLinkLost as exc:
            logger.warning("job %s stopped: %s (the console's lease decides)", ref.job_id, exc)
            return REQUEUED, None
        except Exception as exc:  # noqa: BLE001 - any failure is reported as the job's failure
            error = (
                exc
                if isinstance(exc, VoxfleetError)
                else VoxfleetError(f"Synthesis failed: {exc}", code="engine_error")
            )
            logger.warning("job %s failed: %s", ref.job_id, error.message)
            return self._close(protocol.JOB_FAIL, held, code=error.code, message=error.message[:1000]), None
        engine_seconds = synthesis.engine_seconds
        rtf = engine_seconds / audio_seconds if audio_seconds > 0 else None
        closed = self._close(
            protocol.JOB_DONE,
            held,
            audio_bytes=offset,
            gpu_seconds=round(engine_seconds, 6),
            audio_seconds=round(audio_seconds, 6),
            engine_version=synthesis.version[:64],
        )
        return closed, rtf

    def _close(self, kind: str, held: HeldJob, **fields) -> str:
        """Report the job's end; the console's status (succeeded/failed/refused), else how it was left."""
        try:
            closed = self.link.request(
                kind,
                reply=protocol.JOB_CLOSED,
                session=held.session,
                timeout_s=CLOSE_TIMEOUT_S,
                job_id=held.job_id,
                attempt=held.attempt,
                **fields,
            )
        except JobLinkLost as exc:
            logger.warning("job %s: its %s was not delivered (%s); the console's lease decides", held.job_id, kind, exc)
            return REQUEUED
        if closed is None:
            logger.warning("job %s: no job_closed within %.0f s of its %s", held.job_id, CLOSE_TIMEOUT_S, kind)
            return "unanswered"
        return str(closed.get("status") or "unanswered")


class EngineRun:
    """One job's pieces from the engine; the first one is made at ``start``, before the claim is
    answered, and held. A failure then (prompt audio, language, the engine) is held too and raised
    by ``next``, so it is reported only for a job this node may report on. ``engine_seconds``
    counts the time spent in the engine itself."""

    def __init__(self) -> None:
        self.engine_seconds = 0.0
        self.version = ""
        self._pieces = None
        self._first: list = []
        self._error: Exception | None = None

    @classmethod
    def start(cls, request: Callable[[], SynthesisRequest], engine: Callable[[], SynthesisEngine]) -> EngineRun:
        run = cls()
        try:
            prepared = request()
            loaded = engine()
            run.version = engine_version_label(loaded)
            loaded.check_language(prepared.language)
            run._pieces = loaded.synthesize_stream(prepared)
            run._first.append(run._next_piece())
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure once it is claimed
            run._error = exc
        return run

    def _next_piece(self):
        started = time.perf_counter()
        try:
            return next(self._pieces, None)
        finally:
            self.engine_seconds += time.perf_counter() - started

    def next(self):
        """The next piece, or None at the end."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._first:
            return self._first.pop()
        return self._next_piece() if self._pieces is not None else None

    def close(self) -> None:
        if self._pieces is not None:
            self._pieces.close()
            self._pieces = None


class SettledQoS(kombu_redis.QoS):
    """kombu's Redis ack emulation, except that an ack or reject that cannot reach Redis still
    settles the delivery in the worker's own books.

    kombu forgets a delivery only after Redis answered, so one ack that fails while Redis
    restarts (a job finished during the outage) leaves the delivery counted against the
    prefetch limit (1) forever: the worker reconnects but never fetches again, and the node
    looks alive while its queue grows (seen in tests/faults). What Redis held is gone with its
    restart anyway, and the console republishes a job that stays queued.
    """

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise


class _RedisChannel(kombu_redis.Channel):
    QoS = SettledQoS


class RedisTransport(kombu_redis.Transport):
    """The Redis broker transport of a host's worker (``SettledQoS``)."""

    Channel = _RedisChannel


def worker_app(*, broker_url: str, runner: JobRunner, runtime: HostRuntime) -> Celery:
    """The host's Celery app: no Django (no fix-ups, no settings), one task, no remote control.

    The node's RabbitMQ user may not use ``celery.pidbox``, so drain/resume act on the consumer
    in process (``HostRuntime``); prefetch 1 and late acks so a message is held by one job run.
    """
    app = Celery("voxfleet-host", broker=broker_url, fixups=[], set_as_current=True)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_hijack_root_logger=False,
        accept_content=["json"],
        task_serializer="json",
        enable_utc=True,
    )
    if broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = f"{__name__}:RedisTransport"

    @app.task(name=protocol.RUN_JOB_TASK, bind=True, max_retries=None, ignore_result=True)
    def run_job(task, job: dict) -> None:
        try:
            runner.run(job)
        except RetryLater as exc:
            logger.info("job %s back to the queue in %.0f s: %s", job.get("job_id"), RETRY_DELAY_S, exc)
            raise task.retry(countdown=RETRY_DELAY_S) from None
        except NotAJob as exc:
            logger.error("dropped a message that is not a job: %s", exc)

    def on_ready(sender=None, **kwargs) -> None:
        if getattr(sender, "app", None) is app:
            runtime.consumer_ready(sender)

    signals.worker_ready.connect(on_ready, weak=False)
    return app
