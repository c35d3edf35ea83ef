"""PRODUCT.md's default plans (admins edit them afterwards as data)."""

from decimal import Decimal

from django.db import migrations

PLANS = [
    {
        "code": "free",
        "name": "Free",
        "allowance_tokens": 500,
        "allowance_period": "day",
        "monthly_price": Decimal("0.00"),
        "languages": ["zh"],
        "allow_dialects": False,
        "allow_emotions": False,
        "allow_styles": False,
        "allow_topups": False,
        "dedicated_nodes": False,
        "requests_per_minute": 10,
        "concurrent_jobs": 1,
        "sort_order": 1,
    },
    {
        "code": "pro",
        "name": "Pro",
        "allowance_tokens": 100_000,
        "allowance_period": "month",
        "monthly_price": Decimal("29.00"),
        "overage_price_per_1k": None,
        "languages": [],
        "allow_dialects": True,
        "allow_emotions": True,
        "allow_styles": True,
        "allow_topups": True,
        "dedicated_nodes": False,
        "requests_per_minute": 120,
        "concurrent_jobs": 4,
        "sort_order": 2,
    },
    {
        "code": "enterprise",
        "name": "Enterprise",
        "allowance_tokens": 10_000_000,
        "allowance_period": "month",
        "monthly_price": Decimal("2000.00"),
        "languages": [],
        "allow_dialects": True,
        "allow_emotions": True,
        "allow_styles": True,
        "allow_topups": True,
        "dedicated_nodes": True,
        "requests_per_minute": 1200,
        "concurrent_jobs": 32,
        "is_public": False,
        "sort_order": 3,
    },
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for fields in PLANS:
        Plan.objects.update_or_create(code=fields["code"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(create_plans, migrations.RunPython.noop)]
