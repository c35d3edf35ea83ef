"""Recovery: jobs moved off a dead node (requeued once) and jobs past their deadline (failed).

``job_requeue_from_node`` runs when the fleet reports a node lost (``fleetagent.signals.
node_lost``, connected in ``InferenceConfig.ready``) and when an agent's restart gives up
waiting for its in-flight jobs. ``jobs_expire_overdue`` runs on beat (and in the embedded
executor's loop).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inference.choices import JobStatus
from inference.models import OPEN_STATUSES, SynthesisJob
from inference.services.dispatch import job_dispatch
from inference.services.jobs import job_fail

# A job is moved off a dead node at most this many times; the next death fails it.
MAX_REQUEUES = 1


@dataclass
class RequeueOutcome:
    """Jobs moved off a dead node; ``len()`` is how many were handled (the agent counts them)."""

    requeued: list[int]
    failed: list[int]

    def __len__(self) -> int:
        return len(self.requeued) + len(self.failed)


def job_requeue_from_node(*, node_name: str) -> RequeueOutcome:
    """Move the open jobs of a dead node: requeue each once, fail (and release) on a second death.

    Call after the node is marked offline/stuck so it is not picked again. Returns the
    ids requeued and failed. A late result from the dead node's worker
    finds the job no longer running as its attempt and is discarded, never charged.
    """
    outcome = RequeueOutcome(requeued=[], failed=[])
    open_jobs = SynthesisJob.objects.select_related("tenant__plan").filter(
        node__name=node_name, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
    )
    for job in open_jobs:
        # A job still waiting in the dead node's queue never ran there: moving it is not a retry.
        ran = job.status == JobStatus.RUNNING
        if ran and job.requeues >= MAX_REQUEUES:
            if job_fail(
                job=job,
                code="node_lost",
                message=f"Node {node_name} stopped while running this job twice; nothing was charged.",
            ):
                outcome.failed.append(job.pk)
            continue
        with transaction.atomic():
            moved = SynthesisJob.objects.filter(
                pk=job.pk, node__name=node_name, status=job.status, requeues=job.requeues
            ).update(status=JobStatus.ACCEPTED, node=None, requeues=F("requeues") + (1 if ran else 0), queued_at=None)
            if moved == 1:
                job_id = job.pk
                transaction.on_commit(lambda job_id=job_id: job_dispatch(job_id=job_id))
        if moved == 1:
            outcome.requeued.append(job.pk)
    return outcome


def jobs_expire_overdue(*, now: dt.datetime | None = None) -> list[int]:
    """Fail open jobs past their deadline and release their tokens (run periodically)."""
    now = now or timezone.now()
    expired = []
    for job in SynthesisJob.objects.select_related("tenant__plan").filter(
        status__in=OPEN_STATUSES, deadline_at__lt=now
    ):
        if job_fail(job=job, code="job_timed_out", message="The job did not finish in time; nothing was charged."):
            expired.append(job.pk)
    return expired
