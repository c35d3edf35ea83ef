"""Portal views: thin; reads come from selectors, writes from services."""

from __future__ import annotations

import uuid
from functools import wraps
from pathlib import Path

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from billing.models import ApiKey, MembershipRole
from billing.selectors import quota_get
from billing.services import api_key_create, api_key_revoke
from console.errors import VoxfleetError
from console.portal import charts, forms, selectors, services
from console.portal import playground as playground_rules
from inference.text.normalize import INSTRUCTION_MAX_CHARS, TEXT_MAX_CHARS


def tenant_required(view):
    """Login required, and the user acts for a tenant: sets request.tenant and request.membership."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        membership = selectors.membership_for_user(
            user=request.user, selected_tenant_id=request.session.get(selectors.SESSION_TENANT_KEY)
        )
        if membership is None:
            if request.user.is_staff:
                return redirect("portal:staff_overview")
            return render(request, "portal/no_tenant.html", status=403)
        request.membership = membership
        request.tenant = membership.tenant
        request.is_owner = membership.role == MembershipRole.OWNER
        # Dates on the pages read in the tenant's time zone (where its Free quota resets).
        with timezone.override(membership.tenant.tz):
            return view(request, *args, **kwargs)

    return wrapper


def owner_required(view):
    @wraps(view)
    @tenant_required
    def wrapper(request, *args, **kwargs):
        if not request.is_owner:
            messages.error(request, "Only the organisation's owner can do that.")
            return redirect("portal:dashboard")
        return view(request, *args, **kwargs)

    return wrapper


def _form_error(form, exc: VoxfleetError, field: str | None = None) -> None:
    form.add_error(field, exc.message)


# --- sign-up and team -------------------------------------------------------------------


def signup(request):
    if request.user.is_authenticated:
        return redirect("portal:dashboard")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            user, tenant = services.signup_complete(
                username=d["username"],
                email=d["email"],
                password=d["password1"],
                organisation=d["organisation"],
                time_zone=d["time_zone"],
            )
        except VoxfleetError as exc:
            field = {"username_taken": "username", "organisation_taken": "organisation"}.get(exc.code)
            _form_error(form, exc, field)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Voxfleet. {tenant.name} is on the {tenant.plan.name} plan.")
            return redirect("portal:dashboard")
    return render(request, "portal/signup.html", {"form": form, "time_zones": forms.time_zone_names()})


@tenant_required
def team(request):
    form = forms.InviteForm(request.POST or None)
    invite_link = None
    if request.method == "POST":
        if not request.is_owner:
            messages.error(request, "Only the organisation's owner can invite members.")
            return redirect("portal:team")
        if form.is_valid():
            try:
                invite_link = services.invitation_send(
                    tenant=request.tenant,
                    email=form.cleaned_data["email"],
                    invited_by=request.user,
                    base_url=request.build_absolute_uri("/"),
                )
            except VoxfleetError as exc:
                _form_error(form, exc, "email")
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                form = forms.InviteForm()
    members = selectors.tenant_members(tenant=request.tenant)
    return render(
        request,
        "portal/team.html",
        {
            "form": form,
            "members": members,
            "invite_link": invite_link,
            "my_memberships": selectors.memberships_for_user(user=request.user),
        },
    )


@require_POST
@login_required
def tenant_switch(request):
    """Act for another of the user's tenants (portal pages and the session's API calls)."""
    try:
        tenant_id = int(request.POST.get("tenant", ""))
    except ValueError:
        raise Http404("No such organisation.") from None
    membership = selectors.membership_for_user(user=request.user, selected_tenant_id=tenant_id)
    if membership is None or membership.tenant_id != tenant_id:
        raise Http404("No such organisation.")
    request.session[selectors.SESSION_TENANT_KEY] = tenant_id
    messages.success(request, f"You are now working in {membership.tenant.name}.")
    return redirect("portal:dashboard")


def invite_accept(request, token: str):
    try:
        invitation = services.invitation_read(token=token)
    except VoxfleetError as exc:
        return render(request, "portal/invite_invalid.html", {"error": exc.message}, status=exc.status)
    form = forms.InviteAcceptForm(request.POST or None) if not request.user.is_authenticated else None
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                user, tenant = services.invitation_accept(token=token, user=request.user)
            elif form.is_valid():
                user, tenant = services.invitation_accept(
                    token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                user = tenant = None
        except VoxfleetError as exc:
            if form is not None:
                _form_error(form, exc, "username" if exc.code == "username_taken" else None)
            else:
                messages.error(request, exc.message)
        else:
            if tenant is not None:
                request.session[selectors.SESSION_TENANT_KEY] = tenant.pk
                messages.success(request, f"You joined {tenant.name}.")
                return redirect("portal:dashboard")
    return render(request, "portal/invite_accept.html", {"invitation": invitation, "form": form})


# --- API keys -----------------------------------------------------------------------------


@tenant_required
def api_keys(request):
    form = forms.ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        key, new_key = api_key_create(tenant=request.tenant, name=form.cleaned_data["name"], created_by=request.user)
        messages.success(request, f"Key “{key.name}” created. Copy it now: it is shown only once.")
        form = forms.ApiKeyForm()
    keys = ApiKey.objects.filter(tenant=request.tenant).select_related("created_by").order_by("-created_at")
    return render(request, "portal/api_keys.html", {"form": form, "keys": keys, "new_key": new_key})


@require_POST
@tenant_required
def api_key_revoke_view(request, key_id: int):
    key = ApiKey.objects.filter(tenant=request.tenant, pk=key_id).first()
    if key is None:
        raise Http404("No such key.")
    api_key_revoke(key=key)
    messages.success(request, f"Key {key.prefix}… revoked; requests with it are refused from now on.")
    return redirect("portal:api_keys")


# --- dashboard ----------------------------------------------------------------------------


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


# --- playground ---------------------------------------------------------------------------


@tenant_required
def playground(request):
    presets = playground_rules.presets_for_tenant(tenant=request.tenant)
    plan = request.tenant.plan
    return render(
        request,
        "portal/playground.html",
        {
            "tenant": request.tenant,
            "is_owner": request.is_owner,
            "quota": quota_get(tenant=request.tenant),
            "presets": presets,
            "plan_allows_instructions": plan.allow_dialects and plan.allow_emotions and plan.allow_styles,
            "voices": selectors.voices_for_tenant(tenant=request.tenant),
            "text_limit": TEXT_MAX_CHARS,
            "instruction_limit": INSTRUCTION_MAX_CHARS,
            "initial_text": request.GET.get("text", "")[:TEXT_MAX_CHARS],
            "initial_voice": request.GET.get("voice", ""),
        },
    )


@require_GET
@tenant_required
def playground_quote(request):
    """The live counter: tokens and inline errors, computed by the API's own rules."""
    data = playground_rules.quote_get(
        tenant=request.tenant,
        text=request.GET.get("text", "")[:2000],
        instruction=request.GET.get("instruction", "")[:1000],
    )
    return JsonResponse(data)


@tenant_required
def job_audio(request, job_id: int):
    """A job's WAV for the tenant's members (an outsider gets the same 404 as a missing job)."""
    from inference.models import JobStatus
    from inference.selectors import job_get_for_tenant

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


# --- plan and top-ups ---------------------------------------------------------------------


@tenant_required
def plan(request):
    context = selectors.plan_options(tenant=request.tenant)
    context.update(selectors.topups_for_tenant(tenant=request.tenant))
    context.update(
        {"tenant": request.tenant, "quota": quota_get(tenant=request.tenant), "idempotency_key": uuid.uuid4().hex}
    )
    return render(request, "portal/plan.html", context)


@require_POST
@owner_required
def plan_change_view(request):
    from billing.models import PlanChangeKind
    from billing.services import plan_change

    try:
        change = plan_change(tenant=request.tenant, plan_code=request.POST.get("plan", ""))
    except VoxfleetError as exc:
        messages.error(request, exc.message)
        return redirect("portal:plan")
    if change.kind == PlanChangeKind.UPGRADE and change.prorated_amount:
        _invoice_refresh(request.tenant)
    if change.cancelled_at:
        messages.success(
            request, f"The pending change to {change.to_plan.name} is cancelled; you stay on {change.from_plan.name}."
        )
    elif change.kind == PlanChangeKind.UPGRADE:
        charged = (
            f" {change.prorated_amount} {change.currency} charged for the rest of this month."
            if change.prorated_amount
            else ""
        )
        messages.success(request, f"You are now on the {change.to_plan.name} plan.{charged}")
    else:
        messages.success(
            request,
            f"Your plan changes to {change.to_plan.name} on {timezone.localtime(change.effective_at):%Y-%m-%d %H:%M %Z}; "
            f"until then you keep {change.from_plan.name}.",
        )
    return redirect("portal:plan")


@require_POST
@owner_required
def topup_buy(request):
    from billing.services import topup_purchase

    try:
        topup = topup_purchase(
            tenant=request.tenant,
            pack_code=request.POST.get("pack", ""),
            idempotency_key=request.POST.get("idempotency_key") or None,
        )
    except VoxfleetError as exc:
        messages.error(request, exc.message)
    else:
        _invoice_refresh(request.tenant)
        messages.success(
            request,
            f"{topup.tokens:,} tokens added, valid until {timezone.localtime(topup.expires_at):%Y-%m-%d}. "
            f"Charged {topup.price} {topup.currency}.",
        )
    return redirect("portal:plan")


def _invoice_refresh(tenant) -> None:
    """Put a new charge on this month's draft invoice at once, so the customer sees it there."""
    from billing.services import invoice_draft_build

    invoice_draft_build(tenant=tenant, period_start=timezone.localdate(timezone=tenant.tz).replace(day=1))


# --- invoices and voices ------------------------------------------------------------------


@tenant_required
def invoices(request):
    return render(
        request,
        "portal/invoices.html",
        {"tenant": request.tenant, "invoices": selectors.invoices_for_tenant(tenant=request.tenant)},
    )


@tenant_required
def voices(request):
    from inference.services import voice_create

    form = forms.VoiceForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        upload = d["audio"]
        # The API's limit is 10 MB; read one byte more so the service reports an oversize file.
        audio = upload.read(10 * 1024 * 1024 + 1)
        try:
            voice = voice_create(
                tenant=request.tenant, name=d["name"], audio=audio, transcript=d["transcript"], created_by=request.user
            )
        except VoxfleetError as exc:
            field = {"name": "name", "audio": "audio", "transcript": "transcript"}.get(exc.extra.get("param"))
            if field is None:
                # Everything else voice_create refuses is about the audio (too short, silent, corrupt...).
                field = (
                    "transcript"
                    if "transcript" in exc.code
                    else "name"
                    if exc.code.startswith("voice_name")
                    else "audio"
                )
            form.add_error(field, exc.message)
        else:
            messages.success(
                request, f"Voice “{voice.name}” is ready ({voice.prompt_duration_s:.1f} s of prompt audio)."
            )
            return redirect("portal:voices")
    return render(
        request,
        "portal/voices.html",
        {"tenant": request.tenant, "voices": selectors.voices_for_tenant(tenant=request.tenant), "form": form},
    )


@require_POST
@tenant_required
def voice_delete_view(request, voice_id: str):
    from inference.selectors import voice_get_own
    from inference.services import voice_delete

    try:
        voice = voice_get_own(tenant=request.tenant, voice_id=voice_id)
    except VoxfleetError:
        raise Http404("No such voice.") from None
    name = voice.name
    voice_delete(voice=voice)
    messages.success(request, f"Voice “{name}” deleted; audio already made with it stays available.")
    return redirect("portal:voices")


# --- staff ----------------------------------------------------------------------------


@staff_member_required
def staff_overview(request):
    from billing.models import Plan

    period_start = timezone.localdate().replace(day=1)
    economics = selectors.staff_economics(period_start=period_start, months=6, fresh=bool(request.GET.get("fresh")))
    tenants = economics["tenants"]
    by_tenant, by_node, by_period = economics["by_tenant"], economics["by_node"], economics["by_period"]
    plan_counts = {p.name: 0 for p in Plan.objects.order_by("sort_order")}
    for t in tenants:
        plan_counts[t.plan.name] = plan_counts.get(t.plan.name, 0) + 1
    this_month = by_period[-1] if by_period else None
    figures = {
        "fig_period": charts.grouped_bar_figure(
            x=[e.label for e in by_period],
            series={
                "Revenue": [float(e.revenue) for e in by_period],
                "GPU cost": [float(e.gpu_cost) for e in by_period],
                "Margin": [float(e.margin) for e in by_period],
            },
            y_title=this_month.currency if this_month else "USD",
        ),
        "fig_tenant": charts.grouped_bar_figure(
            x=[e.label for e in by_tenant],
            series={
                "Revenue": [float(e.revenue) for e in by_tenant],
                "GPU cost": [float(e.gpu_cost) for e in by_tenant],
            },
            y_title="this month",
        ),
        "fig_node": charts.grouped_bar_figure(
            x=[e.label for e in by_node],
            series={"Revenue": [float(e.revenue) for e in by_node], "GPU cost": [float(e.gpu_cost) for e in by_node]},
            y_title="this month",
        ),
        "fig_plans": charts.donut_figure(labels=list(plan_counts), values=list(plan_counts.values())),
    }
    for key, column in (("fig_period", "month"), ("fig_tenant", "tenant"), ("fig_node", "node"), ("fig_plans", "plan")):
        charts.with_table(figures[key], first_column=column)
    tenant_ids = {str(t.pk): t for t in tenants}
    rows = [{"e": e, "tenant": tenant_ids.get(e.key)} for e in by_tenant]
    return render(
        request,
        "portal/staff_overview.html",
        {
            "period_start": period_start,
            "rows": rows,
            "by_node": by_node,
            "this_month": this_month,
            "tenant_count": len(tenants),
            "plan_counts": plan_counts,
            "figures": figures,
            "computed_at": economics["computed_at"],
        },
    )


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
