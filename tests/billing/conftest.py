"""Billing test helpers: fresh rate-limit counters for every test."""

import pytest
from django.conf import settings

from billing.services import limits_reset_for_tests


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # make_tenant creates users; the default PBKDF2 would dominate these tests' run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_limits():
    limits_reset_for_tests()
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter("vf:billing:*"))
        if keys:
            client.delete(*keys)
    yield
