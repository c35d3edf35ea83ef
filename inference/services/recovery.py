"""Recovery: every open job reaches an end within seconds of a fault, not at its deadline.

``job_requeue_from_node`` runs when the fleet reports a node lost (``fleetagent.signals.
node_lost``: no heartbeat, or the agent said ``bye``) and when an agent's restart gives up
waiting for its in-flight jobs. ``job_requeue_unheld`` runs when an agent (re)connects and
says in its hello which jobs it still holds: its node's other running jobs died with the
previous process and are requeued at once. A requeued job waits ``accepted`` for a node
(``jobs_dispatch_waiting``: on every hello and on beat). ``jobs_republish_stale`` hands a
job that stayed ``queued`` past a short grace on an idle node (its message lost by a broker
restart) to the broker again; the node's conditional claim makes a duplicate harmless.
``jobs_reclaim_expired_leases`` requeues running jobs whose GPU host stopped renewing their
lease (protocol v3: the host holds no database, so its lease is all the console knows of it).
``jobs_expire_overdue`` fails what is past its deadline. All run on beat (``inference.
jobs_recover``) and in the embedded executor's loop.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from fleetagent.choices import NodeState
from inference.choices import JobStatus
from inference.models import OPEN_STATUSES, SynthesisJob
from inference.services.dispatch import _job_publish, job_dispatch
from inference.services.jobs import job_fail

logger = logging.getLogger(__name__)

# A job is moved off a dead node at most this many times; the next death fails it.
MAX_REQUEUES = 1
# A job queued this long on a node that runs nothing is republished (its message was lost).
REPUBLISH_AFTER_S = 15


@dataclass
class RequeueOutcome:
    """Jobs moved off a dead node; ``len()`` is how many were handled (the agent counts them)."""

    requeued: list[int]
    failed: list[int]

    def __len__(self) -> int:
        return len(self.requeued) + len(self.failed)


def job_requeue_from_node(
    *, node_name: str, keep: Collection[int] | None = None, started_before: dt.datetime | None = None
) -> RequeueOutcome:
    """Move the open jobs of a dead node: requeue each once, fail (and release) on a second death.

    Call after the node is marked offline/stuck so it is not picked again. Returns the
    ids requeued and failed. A late result from the dead node's worker
    finds the job no longer running as its attempt and is discarded, never charged.
    With ``keep`` (a reconnecting agent's held jobs) only running jobs not in it, started
    before ``started_before``, are moved: its queued jobs are still in its queue.
    """
    outcome = RequeueOutcome(requeued=[], failed=[])
    open_jobs = SynthesisJob.objects.select_related("tenant__plan").filter(
        node__name=node_name, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    )
    if keep is not None:
        open_jobs = open_jobs.filter(status=JobStatus.RUNNING).exclude(pk__in=list(keep))
        if started_before is not None:
            open_jobs = open_jobs.filter(started_at__lt=started_before)
    for job in open_jobs:
        _job_requeue(job=job, node_name=node_name, outcome=outcome)
    return outcome


def _job_requeue(
    *, job: SynthesisJob, node_name: str, outcome: RequeueOutcome, extra_filter: dict | None = None
) -> None:
    """Move one open job off ``node_name``: requeue it once (it waits for a node), fail it the second time."""
    # A job still waiting in the dead node's queue never ran there: moving it is not a retry.
    ran = job.status == JobStatus.RUNNING
    if ran and job.requeues >= MAX_REQUEUES:
        if job_fail(
            job=job,
            code="node_lost",
            message=f"Node {node_name} stopped while running this job twice; nothing was charged.",
        ):
            outcome.failed.append(job.pk)
        return
    with transaction.atomic():
        moved = (
            SynthesisJob.objects.filter(pk=job.pk, node__name=node_name, status=job.status, requeues=job.requeues)
            .filter(**(extra_filter or {}))
            .update(
                status=JobStatus.ACCEPTED,
                node=None,
                requeues=F("requeues") + (1 if ran else 0),
                queued_at=None,
                lease_expires_at=None,
            )
        )
        if moved == 1:
            job_id = job.pk
            transaction.on_commit(lambda: job_dispatch(job_id=job_id))
    if moved == 1:
        outcome.requeued.append(job.pk)


def _ids(outcome: RequeueOutcome) -> list[int]:
    return [*outcome.requeued, *outcome.failed]


def jobs_reclaim_expired_leases(*, now: dt.datetime | None = None) -> RequeueOutcome:
    """Running jobs whose host stopped renewing their lease (LEASE_S): requeued once, then failed.

    A host that runs jobs with no database renews every LEASE_RENEW_S; one that died, hung or
    lost its connection for longer gives its jobs back here, within seconds, not at their
    deadline. Jobs with no lease (claimed in the database) are left to their node's heartbeat.
    """
    now = now or timezone.now()
    outcome = RequeueOutcome(requeued=[], failed=[])
    expired = SynthesisJob.objects.select_related("tenant__plan", "node").filter(
        status=JobStatus.RUNNING, lease_expires_at__lt=now
    )
    for job in expired:
        node_name = job.node.name if job.node else ""
        _job_requeue(job=job, node_name=node_name, outcome=outcome, extra_filter={"lease_expires_at__lt": now})
    if len(outcome):
        logger.warning(
            "reclaimed %d job(s) whose lease ran out: requeued %s, failed %s",
            len(outcome),
            outcome.requeued,
            outcome.failed,
        )
    return outcome


def job_requeue_unheld(
    *, node_name: str, held: Collection[int] | Collection[tuple[int, int]], now: dt.datetime | None = None
) -> RequeueOutcome:
    """An agent (re)connected holding ``held``: the node's other running jobs died with it.

    ``held`` is job ids (protocol v1/v2) or ``(job id, attempt)`` pairs (v3): a job held in an
    attempt that is no longer its current one is not held.
    """
    keep = set()
    pairs = {tuple(entry) for entry in held if not isinstance(entry, int)}
    keep.update(entry for entry in held if isinstance(entry, int))
    if pairs:
        running = SynthesisJob.objects.filter(
            node__name=node_name, status=JobStatus.RUNNING, pk__in=[job_id for job_id, _ in pairs]
        ).values_list("pk", "attempts")
        keep.update(job_id for job_id, attempts in running if (job_id, attempts) in pairs)
    outcome = job_requeue_from_node(node_name=node_name, keep=keep, started_before=now or timezone.now())
    if len(outcome):
        logger.warning(
            "node %s reconnected without %d running job(s): requeued %s, failed %s",
            node_name,
            len(outcome),
            outcome.requeued,
            outcome.failed,
        )
    return outcome


def jobs_dispatch_waiting() -> list[int]:
    """Requeued jobs waiting for a node: dispatch each that a node can take now."""
    waiting = SynthesisJob.objects.filter(status=JobStatus.ACCEPTED, node__isnull=True).order_by("created_at")
    return [job_id for job_id in waiting.values_list("pk", flat=True) if job_dispatch(job_id=job_id)]


def jobs_republish_stale(*, now: dt.datetime | None = None, grace_s: float = REPUBLISH_AFTER_S) -> list[int]:
    """Jobs queued past ``grace_s`` on an online node that runs nothing: publish them again.

    Their message was lost (a broker restarted without persistence). ``queued_at`` moves to
    now, so each is republished at most once per grace; a message that was only late and a
    republished one both reach the conditional claim, which runs the job once.
    """
    if settings.EMBEDDED:
        return []  # the in-process executor loses nothing short of a restart, which recovers its jobs
    now = now or timezone.now()
    stale = SynthesisJob.objects.filter(
        status=JobStatus.QUEUED, queued_at__lt=now - dt.timedelta(seconds=grace_s), node__isnull=False
    ).select_related("node", "voice")
    busy = set(
        SynthesisJob.objects.filter(status=JobStatus.RUNNING, node__isnull=False).values_list("node_id", flat=True)
    )
    republished = []
    for job in stale:
        node = job.node
        if node.state != NodeState.ONLINE or node.pk in busy:
            continue
        if SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED, queued_at=job.queued_at).update(
            queued_at=now
        ):
            _job_publish(job=job, node=node)
            republished.append(job.pk)
    if republished:
        logger.warning(
            "republished %d job(s) queued past %s s on idle nodes: %s", len(republished), grace_s, republished
        )
    return republished


def jobs_expire_overdue(*, now: dt.datetime | None = None) -> list[int]:
    """Fail open jobs past their deadline and release their tokens (run periodically)."""
    now = now or timezone.now()
    expired = []
    for job in SynthesisJob.objects.select_related("tenant__plan").filter(
        status__in=OPEN_STATUSES, deadline_at__lt=now
    ):
        if job.status == JobStatus.ACCEPTED and job.node_id is None:
            code, message = "no_node_available", "No node could take the job in time; nothing was charged."
        else:
            code, message = "job_timed_out", "The job did not finish in time; nothing was charged."
        if job_fail(job=job, code=code, message=message):
            expired.append(job.pk)
    return expired


def jobs_recover(*, now: dt.datetime | None = None) -> dict:
    """One recovery pass (beat every 2 s, and the embedded loop): reclaim, dispatch, republish, expire.

    Every 2 s, so a dead host's job is back in the queue within LEASE_S + 2 s of its last renewal.
    """
    return {
        "reclaimed": _ids(jobs_reclaim_expired_leases(now=now)),
        "dispatched": jobs_dispatch_waiting(),
        "republished": jobs_republish_stale(now=now),
        "expired": jobs_expire_overdue(now=now),
    }
