"""Jobs against their token reservations: the half of ``billing_reconcile`` that needs both apps.

Each job that holds or held tokens: its reservation exists, holds the job's tokens, is used
by no other job, and is in the state the job's outcome implies (succeeded = settled,
failed/cancelled = released, still open while the job is accepted, queued or running).
Billing checks its own books (``billing.reconcile``); ``books_drift_find`` runs both in one
snapshot.
"""

from __future__ import annotations

from billing.choices import ReservationStatus
from billing.reconcile import ledger_drift_find, reconcile_snapshot, reservation_states
from inference.choices import JobStatus
from inference.models import SynthesisJob

# The reservation state each job status implies.
RESERVATION_STATE_FOR_JOB = {
    JobStatus.ACCEPTED: ReservationStatus.OPEN,
    JobStatus.QUEUED: ReservationStatus.OPEN,
    JobStatus.RUNNING: ReservationStatus.OPEN,
    JobStatus.SUCCEEDED: ReservationStatus.SETTLED,
    JobStatus.FAILED: ReservationStatus.RELEASED,
    JobStatus.CANCELLED: ReservationStatus.RELEASED,
}


def job_reservation_drift_find() -> list[str]:
    """Every job whose reservation does not match it, as human-readable lines (read-only)."""
    with reconcile_snapshot():
        reservations = reservation_states()
        drift: list[str] = []
        used_by: dict[int, int] = {}
        rows = SynthesisJob.objects.filter(reservation_id__isnull=False).values_list(
            "id", "status", "tokens", "reservation_id"
        )
        for job_id, status, tokens, reservation_id in rows.iterator(chunk_size=5000):
            held = reservations.get(reservation_id)
            if held is None:
                drift.append(f"job {job_id}: reservation {reservation_id} does not exist")
                continue
            held_tokens, held_status = held
            if reservation_id in used_by:
                drift.append(f"job {job_id}: reservation {reservation_id} is also job {used_by[reservation_id]}'s")
            used_by[reservation_id] = job_id
            if held_tokens != tokens:
                drift.append(
                    f"job {job_id}: charged {tokens} tokens but reservation {reservation_id} holds {held_tokens}"
                )
            expected = RESERVATION_STATE_FOR_JOB.get(status)
            if expected is not None and held_status != expected:
                drift.append(
                    f"job {job_id}: {status} but reservation {reservation_id} is {held_status}, not {expected}"
                )
        return drift


def books_drift_find() -> list[str]:
    """The ledger's checks, then the jobs', in one read-only snapshot; empty means all agree."""
    with reconcile_snapshot():
        return ledger_drift_find() + job_reservation_drift_find()
