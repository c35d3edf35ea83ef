"""The Celery application shared by the console, beat and every node's worker."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("voxfleet")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# console.portal is a package inside the console app, not an app of its own: named here.
app.autodiscover_tasks(["console.portal"])
