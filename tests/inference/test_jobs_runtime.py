"""The contract the fleet agent relies on: one engine per process, listeners, reload."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.test import Client

from inference import engines, listeners
from inference.models import JobStatus, SynthesisJob
from inference.services import job_create, job_execute
from tests.support.fleet import node_online


@pytest.fixture
def shared_node(fleet_routing):
    """A shared node of a real fleet, online because its agent connected."""
    return node_online("t-runtime-a")


def test_engine_is_loaded_once_and_reload_gives_a_fresh_engine():
    first = engines.engine_get()
    assert engines.engine_get() is first
    report = engines.engine_clear_and_reload()
    assert engines.engine_get() is not first
    assert report["engine"]["engine"] == "cpu" and report["reload_s"] >= 0
    assert report["vram_before"] == {} and report["vram_after"] == {}  # no CUDA here


def test_listeners_hear_each_finished_job(make_tenant, shared_node, django_capture_on_commit_callbacks):
    heard = []

    def listener(job_id, outcome, duration_s, rtf):
        heard.append((job_id, outcome, duration_s, rtf))

    def broken(*args):
        raise RuntimeError("a dashboard hiccup must not fail the job")

    listeners.add_job_listener(broken)
    listeners.add_job_listener(listener)
    try:
        pro = make_tenant("pro")
        with django_capture_on_commit_callbacks(execute=True):
            job = job_create(tenant=pro, text="听得到吗？", voice="zh-male")
        job_execute(job_id=job.pk, node_name="t-runtime-a")
    finally:
        listeners.remove_job_listener(broken)
        listeners.remove_job_listener(listener)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    [(job_id, outcome, duration_s, rtf)] = heard
    assert (
        job_id == job.pk
        and outcome == "succeeded"
        and duration_s >= job.gpu_seconds
        and rtf == pytest.approx(job.rtf, rel=1e-3)
    )


def test_admin_lists_jobs_and_cannot_edit_their_money(make_tenant, shared_node, staff_user):
    pro = make_tenant("pro")
    job = job_create(tenant=pro, text="管理员", voice="zh-female")
    browser = Client()
    browser.force_login(staff_user)
    assert browser.get("/admin/inference/synthesisjob/").status_code == 200
    page = browser.get(f"/admin/inference/synthesisjob/{job.pk}/change/")
    assert page.status_code == 200 and b'name="tokens"' not in page.content
    assert not site._registry[SynthesisJob].has_add_permission(None)
