"""Top-up packs are paid when bought: invoices list them as prepaid (amount_prepaid, line
prepaid_by) and charge only what is due. On PostgreSQL the frozen-invoice trigger also
freezes amount_prepaid once an invoice leaves draft."""

import django.db.models.deletion
from decimal import Decimal
from django.db import migrations, models


FREEZE_SQL = """
CREATE OR REPLACE FUNCTION billing_invoice_frozen() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN RAISE EXCEPTION 'invoice % is %: cannot delete', OLD.number, OLD.status; END IF;
    RETURN OLD;
  END IF;
  IF OLD.status <> 'draft' AND (
       NEW.total <> OLD.total OR NEW.amount_prepaid <> OLD.amount_prepaid
       OR NEW.currency <> OLD.currency OR NEW.number <> OLD.number
       OR NEW.tenant_id <> OLD.tenant_id OR NEW.period_start <> OLD.period_start
       OR NEW.period_end <> OLD.period_end OR NEW.status = 'draft'
       OR (OLD.status IN ('paid', 'void') AND NEW.status <> OLD.status)) THEN
    RAISE EXCEPTION 'invoice % is %: its amounts and period are frozen', OLD.number, OLD.status;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


def freeze_prepaid(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FREEZE_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_defaults_and_guards"),
    ]

    operations = [
        migrations.AddField(
            model_name="invoice",
            name="amount_prepaid",
            field=models.DecimalField(
                decimal_places=2,
                default=Decimal("0.00"),
                help_text="Part of the total already paid when it was bought (top-up packs); not charged again.",
                max_digits=14,
            ),
        ),
        migrations.AddField(
            model_name="invoiceline",
            name="prepaid_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="billing.payment",
            ),
        ),
        migrations.AlterField(
            model_name="invoice",
            name="total",
            field=models.DecimalField(
                decimal_places=2, default=Decimal("0.00"), help_text="Everything the month charged.", max_digits=14
            ),
        ),
        migrations.AddConstraint(
            model_name="invoice",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_prepaid__gte", 0), ("amount_prepaid__lte", models.F("total"))),
                name="invoice_prepaid_within_total",
            ),
        ),
        migrations.RunPython(freeze_prepaid, migrations.RunPython.noop),
    ]
