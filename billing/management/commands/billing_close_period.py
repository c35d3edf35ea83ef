import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from billing.models import Tenant
from billing.periods import month_previous
from billing.services import billing_period_close


class Command(BaseCommand):
    help = "Build and finalize every tenant's invoice for a month (default: last month). Safe to re-run."

    def add_arguments(self, parser):
        parser.add_argument("--period", help="YYYY-MM; defaults to the previous calendar month")
        parser.add_argument("--draft-only", action="store_true", help="build drafts, do not finalize")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, period=None, draft_only=False, no_progress=False, **options):
        if period:
            try:
                first = dt.datetime.strptime(period, "%Y-%m").date()
            except ValueError:
                raise CommandError(f"--period must look like 2026-10, got {period!r}") from None
        else:
            first = month_previous(timezone.now().date())
        total = Tenant.objects.count()
        # The bar goes to the command's raw stderr stream (OutputWrapper would add a newline per update).
        stream = getattr(self.stderr, "_out", self.stderr)
        with tqdm(total=total, desc=f"closing {first:%Y-%m}", unit="tenant", disable=no_progress, file=stream) as bar:
            counts = billing_period_close(period_start=first, finalize=not draft_only, progress=lambda _t: bar.update())
        self.stdout.write(
            f"{first:%Y-%m}: finalized {counts['finalized']}, drafted {counts['drafted']}, "
            f"already closed {counts['skipped']}, month not over yet {counts['not_over']}"
        )
