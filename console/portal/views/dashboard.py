"""The dashboard: quota, usage charts and recent jobs (with their audio)."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404
from django.shortcuts import render
from django.utils import timezone

from billing.selectors import quota_get
from console.errors import VoxfleetError
from console.portal import charts, selectors
from console.portal.views._access import tenant_required
from inference.choices import JobStatus
from inference.selectors import job_get_for_tenant


@tenant_required
def dashboard(request):
    tenant = request.tenant
    usage = selectors.usage_breakdown(tenant=tenant, days=30)
    figures = {
        "fig_per_day": charts.bar_figure(x=usage["days"], y=usage["tokens_per_day"], name="tokens", dates=True),
        "fig_language": charts.donut_figure(
            labels=list(usage["by_language"]), values=list(usage["by_language"].values())
        ),
        "fig_feature": charts.bar_figure(
            x=list(usage["by_feature"]), y=list(usage["by_feature"].values()), name="tokens", color=charts.PALETTE[1]
        ),
    }
    for key, column in (("fig_per_day", "day"), ("fig_language", "language"), ("fig_feature", "feature")):
        charts.with_table(figures[key], first_column=column)
    quota = quota_get(tenant=tenant)
    return render(
        request,
        "portal/dashboard.html",
        {
            "tenant": tenant,
            "plan": tenant.plan,
            "quota": quota,
            "resets_in": _duration_short(quota.resets_at - timezone.now()),
            "usage": usage,
            "figures": figures,
            "jobs": selectors.jobs_recent(tenant=tenant, limit=10),
        },
    )


@tenant_required
def job_audio(request, job_id: int):
    """A job's WAV for the tenant's members (an outsider gets the same 404 as a missing job)."""
    try:
        job = job_get_for_tenant(tenant=request.tenant, job_id=job_id)
    except VoxfleetError as exc:
        raise Http404(exc.message) from None
    path = Path(job.output_path) if job.output_path else None
    if job.status != JobStatus.SUCCEEDED or path is None or not path.is_file():
        raise Http404("This job has no audio.")
    response = FileResponse(path.open("rb"), content_type="audio/wav")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="voxfleet-job-{job.pk}.wav"'
    return response


def _duration_short(delta) -> str:
    """ "3 d 4 h", "5 h 12 min", "7 min": how long until a reset, at a glance."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"
