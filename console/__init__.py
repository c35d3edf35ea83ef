"""Voxfleet console: the Django project (settings, URLs, ASGI app), portal, ops dashboard and consumers."""

from console.celery import app as celery_app

__all__ = ("celery_app",)
