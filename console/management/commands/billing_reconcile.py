"""``manage.py billing_reconcile``: billing's ledger checks and the jobs against their reservations.

Here, not in billing, because the job half needs the jobs app (a rule that needs two apps
lives in the higher one) and only an entry point may import both.
"""

import sys

from django.core.management.base import BaseCommand

from inference.reconcile import books_drift_find


class Command(BaseCommand):
    help = "Re-derive balances from the ledger and compare with counters and reservations; exit 1 on drift."

    def handle(self, *args, **options):
        drift = books_drift_find()
        if drift:
            for line in drift:
                self.stderr.write(f"DRIFT {line}")
            self.stderr.write(self.style.ERROR(f"billing_reconcile: {len(drift)} problem(s) found"))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS("billing_reconcile: ledger, counters and reservations agree"))
