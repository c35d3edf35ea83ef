"""Default catalogue (top-up packs, A10 cost rate, enterprise GPU rental rate) and, on
PostgreSQL, triggers that make the ledger append-only and finalized invoices immutable
even for code that bypasses the models (raw SQL, QuerySet.update/delete)."""

from decimal import Decimal

from django.db import migrations

PACKS = [
    {"code": "topup-10k", "name": "10k tokens", "tokens": 10_000, "price": Decimal("3.00"), "validity_days": 365},
    {"code": "topup-100k", "name": "100k tokens", "tokens": 100_000, "price": Decimal("25.00"), "validity_days": 365},
    {"code": "topup-1m", "name": "1M tokens", "tokens": 1_000_000, "price": Decimal("200.00"), "validity_days": 365},
]

# Seed: 1,000,000 tokens ~ 1.2 A10 GPU-hours, i.e. 1e6 / 1.2 = 833,333 tokens per GPU-hour
# (0.00432 GPU-s per token). At USD 0.75 per A10-hour, 1M tokens cost 1.2 * 0.75 = USD 0.90.
A10 = {"gpu_model": "A10", "hourly_cost": Decimal("0.7500"), "currency": "USD", "tokens_per_gpu_hour": 833_333}

GUARDS_SQL = """
CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'billing_ledgerentry is append-only (% refused)', TG_OP;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE OR DELETE ON billing_ledgerentry
  FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();

CREATE OR REPLACE FUNCTION billing_invoice_frozen() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN RAISE EXCEPTION 'invoice % is %: cannot delete', OLD.number, OLD.status; END IF;
    RETURN OLD;
  END IF;
  IF OLD.status <> 'draft' AND (
       NEW.total <> OLD.total OR NEW.currency <> OLD.currency OR NEW.number <> OLD.number
       OR NEW.tenant_id <> OLD.tenant_id OR NEW.period_start <> OLD.period_start
       OR NEW.period_end <> OLD.period_end OR NEW.status = 'draft'
       OR (OLD.status IN ('paid', 'void') AND NEW.status <> OLD.status)) THEN
    RAISE EXCEPTION 'invoice % is %: its amounts and period are frozen', OLD.number, OLD.status;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
CREATE TRIGGER billing_invoice_frozen BEFORE UPDATE OR DELETE ON billing_invoice
  FOR EACH ROW EXECUTE FUNCTION billing_invoice_frozen();

CREATE OR REPLACE FUNCTION billing_invoiceline_frozen() RETURNS trigger AS $$
DECLARE st text;
BEGIN
  SELECT status INTO st FROM billing_invoice
   WHERE id = (CASE WHEN TG_OP = 'DELETE' THEN OLD.invoice_id ELSE NEW.invoice_id END);
  IF st IS NOT NULL AND st <> 'draft' THEN
    RAISE EXCEPTION 'invoice lines of a % invoice cannot change (% refused)', st, TG_OP;
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS billing_invoiceline_frozen ON billing_invoiceline;
CREATE TRIGGER billing_invoiceline_frozen BEFORE INSERT OR UPDATE OR DELETE ON billing_invoiceline
  FOR EACH ROW EXECUTE FUNCTION billing_invoiceline_frozen();
"""

UNGUARD_SQL = """
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
DROP TRIGGER IF EXISTS billing_invoice_frozen ON billing_invoice;
DROP TRIGGER IF EXISTS billing_invoiceline_frozen ON billing_invoiceline;
DROP FUNCTION IF EXISTS billing_ledger_append_only();
DROP FUNCTION IF EXISTS billing_invoice_frozen();
DROP FUNCTION IF EXISTS billing_invoiceline_frozen();
"""


def create_defaults(apps, schema_editor):
    TopUpPack = apps.get_model("billing", "TopUpPack")
    GpuCostRate = apps.get_model("billing", "GpuCostRate")
    Plan = apps.get_model("billing", "Plan")
    for fields in PACKS:
        TopUpPack.objects.update_or_create(code=fields["code"], defaults=fields)
    GpuCostRate.objects.update_or_create(gpu_model=A10["gpu_model"], defaults=A10)
    Plan.objects.filter(code="enterprise").update(gpu_rental_price_per_hour=Decimal("2.0000"))


def guards_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(GUARDS_SQL, params=None)


def guards_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNGUARD_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_economics_and_invoice_void")]
    operations = [
        migrations.RunPython(create_defaults, migrations.RunPython.noop),
        migrations.RunPython(guards_create, guards_drop),
    ]
