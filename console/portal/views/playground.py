"""The playground page and its live quote (the API's own rules, see console.portal.playground)."""

from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from billing.selectors import quota_get
from console.portal import playground as playground_rules
from console.portal import selectors
from console.portal.views._access import tenant_required
from inference.text.normalize import INSTRUCTION_MAX_CHARS, TEXT_MAX_CHARS


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
