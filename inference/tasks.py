"""Celery tasks for synthesis: thin wrappers that take an id and call a service."""

from __future__ import annotations

from celery import shared_task

from inference.services import SYNTHESIZE_TASK, job_execute, jobs_expire_overdue


@shared_task(name=SYNTHESIZE_TASK, bind=True, acks_late=True, ignore_result=True)
def synthesize(self, job_id: int, node_name: str | None = None) -> None:
    """Run one job on the node whose queue delivered it ("node.<name>").

    ``acks_late`` (plus reject-on-worker-lost in settings): a worker that dies mid-job gets
    the message redelivered; ``job_execute``'s conditional claim makes the redelivery a
    no-op when the job already finished or moved to another node. The job services send
    it by name (``inference.services.dispatch``), so they never import this module.
    """
    if node_name is None:
        routing_key = (self.request.delivery_info or {}).get("routing_key") or ""
        node_name = routing_key.removeprefix("node.")
    job_execute(job_id=int(job_id), node_name=node_name)


@shared_task(name="inference.jobs_expire_overdue", ignore_result=True)
def expire_overdue() -> int:
    """Fail (and release) jobs past their deadline; scheduled by beat."""
    return len(jobs_expire_overdue())
