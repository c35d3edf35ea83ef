"""Portal fixtures: a fresh cache (owner / teammate / outsider and their clients, the local
node and ``run_job`` are the shared set in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_cache():
    """The staff overview caches its figures; each test starts without them."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
