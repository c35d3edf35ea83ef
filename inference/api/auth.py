"""API authentication: ``Authorization: Bearer <api key>`` for clients, the session for the portal.

Both end in one question every view asks: which tenant is this request for?
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from billing.models import ApiKey, Membership, Tenant
from billing.services import api_key_authenticate
from console.errors import NotFound, PermissionDenied


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


class ApiKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer vf_…``; no header means "try the next authenticator"."""

    keyword = "bearer"

    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            parts = header.decode("latin-1").split()
        except UnicodeDecodeError:
            raise AuthenticationFailed("The Authorization header is not readable.", code="invalid_api_key") from None
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed(
                "Use 'Authorization: Bearer <api key>' with exactly one key.", code="invalid_api_key"
            )
        try:
            key = api_key_authenticate(plaintext=parts[1])
        except NotFound:
            raise AuthenticationFailed("Invalid or revoked API key.", code="invalid_api_key") from None
        return ApiKeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing.
        return 'Bearer realm="voxfleet"'


API_AUTHENTICATION = [ApiKeyAuthentication, SessionAuthentication]

# The portal may remember which of a user's tenants is selected under this session key.
SESSION_TENANT_KEY = "tenant_id"


def request_tenant(request) -> Tenant:
    """The tenant the request acts for: the API key's, or the session user's (selected) one."""
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        tenant = auth.tenant
    else:
        user = request.user
        memberships = Membership.objects.select_related("tenant__plan").filter(user=user).order_by("created_at", "id")
        selected = getattr(request, "session", {}).get(SESSION_TENANT_KEY) if hasattr(request, "session") else None
        membership = None
        if selected is not None:
            membership = memberships.filter(tenant_id=selected).first()
        membership = membership or memberships.first()
        if membership is None:
            raise PermissionDenied("Your account is not a member of any tenant.", code="no_tenant")
        tenant = membership.tenant
    if not tenant.is_active:
        raise PermissionDenied("This tenant is suspended.", code="tenant_inactive")
    return tenant


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "inference.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "vf_… API key"}
