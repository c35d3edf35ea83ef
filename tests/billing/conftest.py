"""Billing test helpers: fresh rate-limit counters for every test."""

import pytest

from tests.support.limits import limits_clear


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # make_tenant creates users; the default PBKDF2 would dominate these tests' run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_limits():
    limits_clear()
    yield
