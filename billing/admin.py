"""Billing in the Django admin: plans, tenants, keys, quotas, ledger (read-only), top-ups, invoices, GPU costs."""

from django.contrib import admin, messages
from django.utils import timezone

from billing import services
from billing.models import (
    ApiKey,
    BillingAccount,
    CustomFee,
    GpuCostRate,
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


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "plan", "time_zone", "is_active", "created_at"]
    list_filter = ["plan", "is_active", "time_zone"]
    search_fields = ["name", "slug", "billing_email"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline, BillingAccountInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "tenant", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "tenant__name"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            services.api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ["tenant", "window_start", "window_end", "allowance_tokens", "allowance_remaining", "pending_plan"]
    list_filter = ["tenant__plan", ("pending_plan", admin.EmptyFieldListFilter)]
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
    search_fields = ["tenant__name"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "amount", "currency", "provider", "status", "purpose", "reference"]
    list_filter = ["provider", "status", "currency"]
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
    search_fields = ["tenant__name"]


@admin.register(CustomFee)
class CustomFeeAdmin(admin.ModelAdmin):
    list_display = ["tenant", "description", "amount", "currency", "period_month"]
    list_filter = ["period_month", "currency"]
    search_fields = ["tenant__name", "description"]
    autocomplete_fields = ["tenant"]


@admin.register(GpuCostRate)
class GpuCostRateAdmin(admin.ModelAdmin):
    list_display = ["gpu_model", "hourly_cost", "currency", "tokens_per_gpu_hour", "updated_at"]
    list_filter = ["currency"]


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    fields = ["position", "kind", "description", "quantity", "unit_price", "amount"]

    def _editable(self, obj):
        return obj is not None and obj.status == InvoiceStatus.DRAFT

    def has_add_permission(self, request, obj=None):
        return self._editable(obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj)


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    list_display = ["number", "tenant", "period_start", "status", "total", "currency", "finalized_at", "paid_at"]
    list_filter = ["status", "period_start", "currency", "tenant__plan"]
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
        return obj is not None and obj.status == InvoiceStatus.DRAFT

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
