import sys

from django.core.management.base import BaseCommand

from billing.reconcile import ledger_drift_find


class Command(BaseCommand):
    help = "Re-derive balances from the ledger and compare with counters and reservations; exit 1 on drift."

    def handle(self, *args, **options):
        drift = ledger_drift_find()
        if drift:
            for line in drift:
                self.stderr.write(f"DRIFT {line}")
            self.stderr.write(self.style.ERROR(f"billing_reconcile: {len(drift)} problem(s) found"))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS("billing_reconcile: ledger, counters and reservations agree"))
