"""Billing in the Django admin: plans, tenants, keys, quotas, ledger (read-only), top-ups, invoices, GPU costs."""

from django.contrib import admin, messages
from django.utils import timezone

from billing import services
from billing.choices import PlanChangeKind
from billing.models import (
    AlertPolicy,
    ApiKey,
    BillingAccount,
    CustomFee,
    GpuCostRate,
    Invitation,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LedgerEntry,
    Membership,
    Payment,
    Plan,
    PlanChange,
    Tenant,
    TokenReservation,
    TopUp,
    TopUpPack,
    UsageAlert,
    WebhookDelivery,
    WebhookEndpoint,
)
from console.errors import VoxfleetError


class ReadOnlyAdmin(admin.ModelAdmin):
    """History rows: visible, filterable, never edited or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "code",
        "allowance_tokens",
        "allowance_period",
        "monthly_price",
        "currency",
        "requests_per_minute",
        "concurrent_jobs",
        "is_public",
    ]
    list_filter = ["allowance_period", "is_public", "dedicated_nodes", "allow_topups"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role", "tenant__plan"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class BillingAccountInline(admin.StackedInline):
    model = BillingAccount
    can_delete = False
    extra = 0
    # Balances move only through services (each change is a ledger row); the rental rate is a contract term.
    readonly_fields = [
        "window_start",
        "window_end",
        "allowance_tokens",
        "allowance_remaining",
        "pending_plan",
        "pending_plan_at",
    ]
    fields = [*readonly_fields, "gpu_rental_price_per_hour"]


def _plan_change_action(code: str, name: str):
    def action(modeladmin, request, queryset):
        done = 0
        for tenant in queryset.select_related("plan"):
            try:
                change = services.plan_change(tenant=tenant, plan_code=code, by_staff=True)
                if change.kind == PlanChangeKind.UPGRADE and change.prorated_amount:
                    services.invoice_draft_refresh(tenant=tenant)
                done += 1
            except VoxfleetError as exc:
                modeladmin.message_user(request, f"{tenant.name}: {exc.message}", messages.ERROR)
        if done:
            modeladmin.message_user(
                request,
                f"Plan change to {name} requested for {done} tenant(s) (upgrades now, downgrades at month end).",
            )

    action.__name__ = f"plan_change_to_{code}"
    return action, action.__name__, f"Change plan to {name} (plan-change service: prorated, ledgered)"


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    """The plan is read-only here: it changes only through the plan-change service (the actions)."""

    list_display = ["name", "plan", "time_zone", "is_active", "created_at"]
    list_filter = ["plan", "is_active", "time_zone"]
    list_select_related = ["plan"]
    search_fields = ["name", "slug", "billing_email"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, BillingAccountInline]

    def get_readonly_fields(self, request, obj=None):
        # On a new tenant the plan is its starting plan; afterwards only the plan-change service moves it.
        return ["plan", "created_at"] if obj is not None else ["created_at"]

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if obj is None else {}

    def has_delete_permission(self, request, obj=None):
        return False  # tenants own ledger rows and invoices (PROTECT); suspend with is_active instead

    def get_actions(self, request):
        actions = super().get_actions(request)
        for plan in Plan.objects.order_by("sort_order", "name"):
            action, name, description = _plan_change_action(plan.code, plan.name)
            actions[name] = (action, name, description)
        return actions


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    """Sent from the portal's team page (owners), accepted once, withdrawn there."""

    list_display = ["email", "tenant", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_select_related = ["tenant", "invited_by"]
    list_filter = [("accepted_at", admin.EmptyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "tenant__name"]
    exclude = ["secret_hash"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "tenant", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant__plan", ("revoked_at", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant"]
    search_fields = ["prefix", "name", "tenant__name"]
    # A key belongs to its tenant for good: keys are minted by api_key_create (portal), revoked here.
    readonly_fields = [
        "tenant",
        "prefix",
        "secret_hash",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "cap_month",
        "cap_month_tokens",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: jobs keep pointing at the key that made them

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["tenant", "window_start", "window_end", "allowance_tokens", "allowance_remaining", "pending_plan"]
    list_filter = ["tenant__plan", ("pending_plan", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant", "pending_plan"]
    search_fields = ["tenant__name"]
    readonly_fields = [f.name for f in BillingAccount._meta.fields if f.name != "gpu_rental_price_per_hour"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TokenReservation)
class TokenReservationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "tenant",
        "tokens",
        "status",
        "reference",
        "node_name",
        "gpu_seconds",
        "created_at",
        "settled_at",
    ]
    list_filter = ["status", "tenant__plan", "node_name", "gpu_model", "created_at"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name", "reference", "idempotency_key", "node_name"]
    date_hierarchy = "created_at"


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "tenant",
        "kind",
        "bucket",
        "available_delta",
        "held_delta",
        "reservation",
        "topup",
        "note",
    ]
    list_filter = ["kind", "bucket", "tenant__plan", "created_at"]
    list_select_related = ["tenant", "reservation", "topup"]
    search_fields = ["tenant__name", "note", "idempotency_key"]
    date_hierarchy = "created_at"


@admin.register(TopUpPack)
class TopUpPackAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "tokens", "price", "currency", "validity_days", "is_active"]
    list_filter = ["is_active", "currency"]


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ["id", "tenant", "pack", "tokens", "remaining", "price", "purchased_at", "expires_at", "expired_at"]
    list_filter = ["pack", ("expired_at", admin.EmptyFieldListFilter), "expires_at"]
    list_select_related = ["tenant", "pack"]
    search_fields = ["tenant__name"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "amount", "currency", "provider", "status", "purpose", "reference"]
    list_filter = ["provider", "status", "currency"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name", "reference", "purpose"]


@admin.register(PlanChange)
class PlanChangeAdmin(ReadOnlyAdmin):
    list_display = [
        "requested_at",
        "tenant",
        "from_plan",
        "to_plan",
        "kind",
        "effective_at",
        "applied_at",
        "cancelled_at",
        "prorated_amount",
    ]
    list_filter = ["kind", "to_plan", ("applied_at", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant", "from_plan", "to_plan"]
    search_fields = ["tenant__name"]


@admin.register(CustomFee)
class CustomFeeAdmin(admin.ModelAdmin):
    list_display = ["tenant", "description", "amount", "currency", "period_month"]
    list_select_related = ["tenant"]
    list_filter = ["period_month", "currency"]
    search_fields = ["tenant__name", "description"]
    autocomplete_fields = ["tenant"]


@admin.register(GpuCostRate)
class GpuCostRateAdmin(admin.ModelAdmin):
    list_display = ["gpu_model", "hourly_cost", "currency", "tokens_per_gpu_hour", "updated_at"]
    list_filter = ["currency"]


class InvoiceLineInline(admin.TabularInline):
    """Lines are money: computed from usage by invoice_draft_build ("Rebuild"), never typed in."""

    model = InvoiceLine
    extra = 0
    fields = ["position", "kind", "description", "quantity", "unit_price", "amount", "prepaid_by"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "tenant", "period_start", "status", "total", "currency", "finalized_at", "paid_at"]
    list_filter = ["status", "period_start", "currency", "tenant__plan"]
    list_select_related = ["tenant"]
    search_fields = ["number", "tenant__name"]
    date_hierarchy = "period_start"
    inlines = [InvoiceLineInline]
    readonly_fields = [
        "number",
        "tenant",
        "period_start",
        "period_end",
        "status",
        "currency",
        "total",
        "amount_prepaid",
        "created_at",
        "finalized_at",
        "paid_at",
        "voided_at",
        "void_reason",
        "payment",
    ]
    actions = ["rebuild", "finalize", "mark_paid", "void"]

    def has_add_permission(self, request):
        return False  # invoices come from billing_close_period / invoice_draft_build

    def has_delete_permission(self, request, obj=None):
        return False  # a draft is rebuilt, a finalized one voided: invoice numbers are never reused

    def _each(self, request, queryset, fn, verb):
        done = 0
        for invoice in queryset:
            try:
                fn(invoice)
                done += 1
            except VoxfleetError as exc:
                self.message_user(request, f"{invoice.number}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, f"{verb} {done} invoice(s).")

    @admin.action(description="Rebuild selected drafts from usage")
    def rebuild(self, request, queryset):
        self._each(
            request,
            queryset.filter(status=InvoiceStatus.DRAFT),
            lambda i: services.invoice_draft_build(tenant=i.tenant, period_start=i.period_start),
            "Rebuilt",
        )

    @admin.action(description="Finalize selected invoices")
    def finalize(self, request, queryset):
        self._each(request, queryset, lambda i: services.invoice_finalize(invoice_id=i.pk), "Finalized")

    @admin.action(description="Mark selected invoices paid (manual provider)")
    def mark_paid(self, request, queryset):
        self._each(request, queryset, lambda i: services.invoice_mark_paid(invoice_id=i.pk), "Marked paid")

    @admin.action(description="Void selected invoices")
    def void(self, request, queryset):
        reason = f"voided in admin by {request.user} at {timezone.now():%Y-%m-%d %H:%M}"
        self._each(request, queryset, lambda i: services.invoice_void(invoice_id=i.pk, reason=reason), "Voided")


@admin.register(AlertPolicy)
class AlertPolicyAdmin(ReadOnlyAdmin):
    """Set by each tenant's owner on the portal's alerts page."""

    list_display = ["tenant", "allowance_percents", "topup_below_tokens", "email_enabled", "updated_at"]
    list_filter = ["email_enabled"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    list_display = ["url", "tenant", "is_active", "created_at"]
    list_filter = ["is_active"]
    list_select_related = ["tenant"]
    search_fields = ["url", "tenant__name"]
    exclude = ["secret"]


@admin.register(UsageAlert)
class UsageAlertAdmin(ReadOnlyAdmin):
    list_display = ["fired_at", "tenant", "kind", "threshold", "value", "allowance_tokens", "period_start"]
    list_filter = ["kind", "fired_at"]
    list_select_related = ["tenant"]
    search_fields = ["tenant__name"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "alert", "endpoint", "status", "attempts", "last_status_code", "delivered_at"]
    list_filter = ["status", "created_at"]
    list_select_related = ["alert", "endpoint"]
    search_fields = ["endpoint__url", "alert__tenant__name"]
