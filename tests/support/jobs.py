"""Synthesis jobs for tests, in a state that only a node's worker puts them in."""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from inference.models import JobStatus, SynthesisJob


def job_claim_as_worker(job):
    """The first step of ``job_execute`` alone (queued -> running, one more attempt), as a node's
    worker takes the job: it is left "running" on a host that the test then lets die or restart.

    Written by hand on purpose: no service claims a job without also running it to the end.
    """
    SynthesisJob.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    job.refresh_from_db()
    return job
