"""The node's task when the database fails: retried on its queue, never acked away."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry
from django.db import OperationalError

from inference import tasks


def test_a_claim_that_hit_a_database_fault_is_retried(monkeypatch):
    calls = []

    def claim_fails(*, job_id, node_name):
        calls.append((job_id, node_name))
        raise OperationalError("terminating connection due to administrator command")

    retried = {}

    def retry(*, exc, countdown):
        retried.update(exc=exc, countdown=countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(tasks, "job_execute", claim_fails)
    monkeypatch.setattr(tasks.synthesize, "retry", retry)
    with pytest.raises(Retry):
        tasks.synthesize.run(7, node_name="gpu-a")
    assert calls == [(7, "gpu-a")]
    assert isinstance(retried["exc"], OperationalError) and 1 <= retried["countdown"] <= 5


def test_other_errors_are_not_retried(monkeypatch):
    def crash(*, job_id, node_name):
        raise ValueError("not a fault")

    monkeypatch.setattr(tasks, "job_execute", crash)
    with pytest.raises(ValueError):
        tasks.synthesize.run(7, node_name="gpu-a")
