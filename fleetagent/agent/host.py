"""A GPU host's side of its jobs, with no database: what it holds, ops on it, its link to the console.

``HostRuntime`` counts the jobs this process holds (claimed over the websocket and not yet
closed by the console's ``job_closed``), renews their leases, stops them when the connection
drops or the console refuses a frame about them, and runs drain/resume/restart
(``fleetagent.agent.ops``) on the worker of this process: drain stops consuming the node's
queue in process (the node's broker user has no remote-control rights), and a restart's ack
reports each in-flight job's end as the console answered it.

``ConsoleLink`` is how a worker thread talks over the agent's websocket, whose asyncio client
runs in another thread: every call is handed to that loop thread-safely and bounded in time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetagent import protocol
from fleetagent.agent.client import JobLinkLost
from fleetagent.agent.ops import OpsRuntime

if TYPE_CHECKING:
    from fleetagent.agent.client import AgentClient

logger = logging.getLogger(__name__)

# How long one frame may take to leave (a stalled socket counts as a lost one).
SEND_TIMEOUT_S = 20.0
# Outcomes of recently closed jobs kept for restart acks.
CLOSED_KEEP = 1000
# How a job ends that this host stopped (the connection dropped, a restart stopped waiting): its
# lease lapses and the console requeues it.
REQUEUED = "requeued"


@dataclass
class HeldJob:
    """One job this process runs: claimed on connection ``session``; ``stop`` set when it must end."""

    job_id: int
    attempt: int
    session: int
    stop: threading.Event = field(default_factory=threading.Event)
    why: str = ""
    outcome: str = REQUEUED  # what it ended as once stopped

    def stop_now(self, why: str, *, outcome: str = REQUEUED) -> None:
        if not self.stop.is_set():
            self.why, self.outcome = why, outcome
            self.stop.set()


class HostRuntime(OpsRuntime):
    """Ops and job bookkeeping of a GPU host; thread-safe (worker threads and the agent's loop)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._jobs_lock = threading.Lock()
        self._held: dict[int, HeldJob] = {}
        self._closed: OrderedDict[int, str] = OrderedDict()
        self._waiting = 0  # messages taken from the queue and not yet claimed or dropped
        # The Celery worker's consumer of this process (set when the worker is ready).
        self.consumer = None

    @property
    def queue(self) -> str:
        return f"node.{self.node_name}"

    # --- the jobs it holds (worker threads) ----------------------------------------------------
    def hold(self, *, job_id: int, attempt: int, session: int) -> HeldJob:
        held = HeldJob(job_id=job_id, attempt=attempt, session=session)
        with self._jobs_lock:
            self._held[job_id] = held
        self.stats.job_started(job_id)
        return held

    def release(self, held: HeldJob, *, outcome: str) -> None:
        """The job ended here: the console's word (succeeded/failed/refused) or how it was left."""
        with self._jobs_lock:
            if self._held.get(held.job_id) is held:
                del self._held[held.job_id]
            self._closed[held.job_id] = outcome
            self._closed.move_to_end(held.job_id)
            while len(self._closed) > CLOSED_KEEP:
                self._closed.popitem(last=False)

    def waiting(self, change: int) -> None:
        with self._jobs_lock:
            self._waiting += change

    def held(self) -> list[HeldJob]:
        with self._jobs_lock:
            return list(self._held.values())

    def jobs_held(self) -> list[list[int]]:
        return [[job.job_id, job.attempt] for job in self.held() if not job.stop.is_set()]

    def job_leases(self) -> list[list[int]]:
        return self.jobs_held()

    def job_ended_elsewhere(self, job_id, attempt, *, outcome: str) -> None:
        super().job_ended_elsewhere(job_id, attempt, outcome=outcome)
        with self._jobs_lock:
            held = self._held.get(job_id)
        if held is not None and held.attempt == attempt:
            held.stop_now(f"the console ended it ({outcome})", outcome=outcome)

    def link_lost(self) -> None:
        # Jobs run over one connection; on the next one the console's lease decides (no finishing into the void).
        for held in self.held():
            held.stop_now("the console connection dropped")

    # --- ops --------------------------------------------------------------------------------------
    async def counts(self) -> tuple[int, int]:
        with self._jobs_lock:
            return len(self._held), self._waiting

    async def _in_flight(self) -> list[int]:
        return [job.job_id for job in self.held()]

    async def _give_back(self) -> int:
        """Still running when the restart stopped waiting: stopped, no longer renewed (their
        leases lapse and the console requeues them), so the engine can be reloaded."""
        stopped = self.held()
        for held in stopped:
            held.stop_now("the node is restarting")
            self.release(held, outcome=REQUEUED)
        return len(stopped)

    async def _outcomes(self, job_ids: list[int]) -> dict[int, str]:
        with self._jobs_lock:
            return {job_id: self._closed.get(job_id, REQUEUED) for job_id in job_ids}

    def consumer_ready(self, consumer) -> None:
        """The worker's consumer is up: a node drained before it started does not consume."""
        self.consumer = consumer
        if self.draining:
            consumer.call_soon(consumer.cancel_task_queue, self.queue)

    async def _consume_stop(self) -> None:
        if self.consumer is not None:
            self.consumer.call_soon(self.consumer.cancel_task_queue, self.queue)  # on the consumer's own loop

    async def _consume_start(self) -> None:
        if self.consumer is not None:
            self.consumer.call_soon(self.consumer.add_task_queue, self.queue)


class ConsoleLink:
    """Job frames from a worker thread over the agent's websocket (its loop runs elsewhere)."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    def session(self) -> int:
        """The current connection's number; JobLinkLost when not connected."""
        if not self.client.connected.is_set():
            raise JobLinkLost("not connected to the console")
        return self.client.session

    def _submit(self, coroutine) -> concurrent.futures.Future:
        loop = self.client.loop
        if loop is None or not loop.is_running():
            coroutine.close()
            raise JobLinkLost("the agent's loop is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, loop)

    @staticmethod
    def _result(future: concurrent.futures.Future, timeout_s: float):
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise JobLinkLost(f"the console link stalled for {timeout_s:.0f} s") from None

    def _call(self, coroutine, timeout_s: float):
        return self._result(self._submit(coroutine), timeout_s)

    def send(self, data: bytes | str, *, session: int) -> None:
        self._call(self.client.job_send(data, session=session), SEND_TIMEOUT_S)

    def request(self, kind: str, *, reply: str, session: int, timeout_s: float, **fields) -> dict | None:
        """Send a job frame and wait (at most ``timeout_s``) for the console's ``reply`` about it."""
        return self.request_end(
            self.request_begin(kind, reply=reply, session=session, timeout_s=timeout_s, **fields), timeout_s=timeout_s
        )

    def request_begin(
        self, kind: str, *, reply: str, session: int, timeout_s: float, **fields
    ) -> concurrent.futures.Future:
        """``request`` without waiting for the answer, which ``request_end`` takes. Returns once the
        frame has left: the caller's next work (the engine) must not hold it up in this process."""
        text = protocol.message_encode(kind, version=self.client.version, **fields)
        key = (reply, fields["job_id"], fields["attempt"])
        sent = threading.Event()
        answer = self._submit(
            self.client.job_request(text, reply=key, session=session, timeout_s=timeout_s, on_sent=sent.set)
        )
        answer.add_done_callback(lambda _answer: sent.set())  # a frame that cannot leave ends the wait too
        if not sent.wait(SEND_TIMEOUT_S):
            answer.cancel()
            raise JobLinkLost(f"the console link stalled for {SEND_TIMEOUT_S:.0f} s")
        return answer

    def request_end(self, answer: concurrent.futures.Future, *, timeout_s: float) -> dict | None:
        """The answer to a ``request_begin`` (None when none came in time); JobLinkLost if the link went."""
        return self._result(answer, timeout_s + SEND_TIMEOUT_S)
