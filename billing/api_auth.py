"""API authentication (billing owns tenants and API keys): ``Authorization: Bearer <api key>`` for clients, the session for the portal.

Both end in one question every view asks: which tenant is this request for?
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from billing.choices import SESSION_TENANT_KEY, ApiKeyScope
from billing.errors import ApiKeyScopeMissing
from billing.selectors import tenant_for_user
from billing.services import api_key_authenticate
from console.credentials import bearer_token
from console.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from billing.models import ApiKey, Tenant


class ApiKeyPrincipal:
    """``request.user`` for a request authenticated by an API key: it acts for the key's tenant."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.tenant = api_key.tenant
        self.username = f"api-key:{api_key.prefix}"

    def __str__(self) -> str:
        return self.username


# The scopes that let an API key use each route (any one of them will do); a route not
# listed (the model list) takes any key. One table for /api/v1/ and the OpenAI-compatible /v1/.
_SYNTH, _USAGE, _VOICES = ApiKeyScope.SYNTHESIZE, ApiKeyScope.USAGE_READ, ApiKeyScope.VOICES_MANAGE
ROUTE_SCOPES: dict[tuple[str, str], frozenset[str]] = {
    ("api-jobs", "POST"): frozenset({_SYNTH}),
    ("api-jobs", "GET"): frozenset({_SYNTH, _USAGE}),
    ("api-job", "GET"): frozenset({_SYNTH, _USAGE}),
    ("api-job-cancel", "POST"): frozenset({_SYNTH}),
    ("api-job-audio", "GET"): frozenset({_SYNTH}),
    ("api-usage", "GET"): frozenset({_USAGE}),
    ("api-quota", "GET"): frozenset({_USAGE, _SYNTH}),
    ("api-voices", "GET"): frozenset({_SYNTH, _VOICES}),
    ("api-voices", "POST"): frozenset({_VOICES}),
    ("api-voice", "GET"): frozenset({_SYNTH, _VOICES}),
    ("api-voice", "PATCH"): frozenset({_VOICES}),
    ("api-voice", "DELETE"): frozenset({_VOICES}),
    ("openai-speech", "POST"): frozenset({_SYNTH}),
}


def api_key_scope_check(*, key: ApiKey, route: str | None, method: str) -> None:
    """ApiKeyScopeMissing (403) unless the key has one of the scopes the route needs."""
    needed = ROUTE_SCOPES.get((route or "", method.upper()))
    if needed and not needed & set(key.scopes or ()):
        raise ApiKeyScopeMissing(
            f"This API key may not do this: it needs the {' or '.join(sorted(needed))} scope "
            f"(it has {', '.join(key.scopes or []) or 'none'}). Create a key with that scope on the API keys page.",
            needed=sorted(needed),
        )


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer vf_…``; no header means "try the next authenticator"."""

    def authenticate(self, request):
        token = bearer_token(get_authorization_header(request))
        if token is None:
            return None
        if not token or len(token.split()) != 1:
            raise AuthenticationFailed(
                "Use 'Authorization: Bearer <api key>' with exactly one key.", code="invalid_api_key"
            )
        try:
            key = api_key_authenticate(plaintext=token)
        except NotFound:
            raise AuthenticationFailed("Invalid or revoked API key.", code="invalid_api_key") from None
        match = getattr(request._request, "resolver_match", None)
        api_key_scope_check(key=key, route=match.url_name if match else None, method=request.method)
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing.
        return 'Bearer realm="voxfleet"'


API_AUTHENTICATION = [ApiKeyAuthentication, SessionAuthentication]


def request_tenant(request) -> Tenant:
    """The tenant the request acts for: the API key's, or the session user's (selected) one."""
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        tenant = user.tenant
    else:
        session = getattr(request, "session", None)
        selected = session.get(SESSION_TENANT_KEY) if session is not None else None
        tenant = tenant_for_user(user=user, tenant_id=selected)
        if tenant is None:
            raise PermissionDenied("Your account is not a member of any tenant.", code="no_tenant")
    if not tenant.is_active:
        raise PermissionDenied("This tenant is suspended.", code="tenant_inactive")
    return tenant


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "billing.api_auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "vf_… API key"}
