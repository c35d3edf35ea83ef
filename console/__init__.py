"""Voxfleet console: the Django project (settings, URLs, ASGI app), portal, ops dashboard and consumers.

The Celery app (``console.celery``) is created when Django starts (``ConsoleConfig.ready``) and
by ``celery -A console``, not on import of this package: a GPU host imports the console's base
modules (``console.errors``) without Django.
"""
