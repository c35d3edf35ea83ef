import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from console.env import database_from_url, env_bool, env_int, validate_redis_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "postgres://host:notaport/db", "postgres://127.0.0.1:5432/", "postgres:///db", "nonsense"],
)
def test_malformed_database_url_names_the_setting(url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        database_from_url(url)


def test_database_url_postgres_and_sqlite():
    pg = database_from_url("postgres://alice:s%40cret@db.example:6543/voxfleet?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"]) == (
        "voxfleet",
        "alice",
        "s@cret",
        "db.example",
        "6543",
    )
    assert pg["OPTIONS"]["sslmode"] == "require"
    assert pg["OPTIONS"]["pool"]["max_size"] == 20 and pg["CONN_MAX_AGE"] == 0
    unpooled = database_from_url("postgres://db.example/voxfleet?pool_max_size=0")
    assert "pool" not in unpooled["OPTIONS"] and unpooled["CONN_MAX_AGE"] == 60
    assert database_from_url("sqlite:////tmp/x.sqlite3")["NAME"] == "/tmp/x.sqlite3"


def test_typed_helpers_fail_loudly(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        env_bool("SOME_FLAG")
    monkeypatch.setenv("SOME_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_INT"):
        env_int("SOME_INT", 1)
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        validate_redis_url("http://localhost:6379")


def _django_setup(**env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}}
    clean.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='console.settings'; django.setup()",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_start_with_malformed_database_url_fails_naming_it():
    result = _django_setup(DATABASE_URL="postgres://localhost:abc/voxfleet")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_production_start_without_secret_key_fails_naming_it():
    result = _django_setup(
        VOXFLEET_PRODUCTION="1",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/voxfleet",
        REDIS_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="voxfleet.example",
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_development_defaults():
    result = _django_setup(VOXFLEET_PRODUCTION="1", SECRET_KEY="x" * 40, ALLOWED_HOSTS="voxfleet.example")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_production_starts_when_fully_configured():
    result = _django_setup(
        VOXFLEET_PRODUCTION="1",
        SECRET_KEY="x" * 40,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/voxfleet",
        REDIS_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="voxfleet.example",
    )
    assert result.returncode == 0, result.stderr


_PRODUCTION = {
    "VOXFLEET_PRODUCTION": "1",
    "SECRET_KEY": "x" * 40,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/voxfleet",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "voxfleet.example",
}


def test_production_refuses_debug():
    result = _django_setup(**_PRODUCTION, DEBUG="1")
    assert result.returncode != 0
    assert "DEBUG must be off" in result.stderr


def _settings_of(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    clean.update(env)
    code = (
        "import django, json, os; os.environ['DJANGO_SETTINGS_MODULE']='console.settings'; django.setup();"
        "from django.conf import settings as s;"
        "print(json.dumps({k: getattr(s, k) for k in ('DEBUG', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS',"
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_sets_hsts_secure_cookies_and_the_proxy_header():
    prod = _settings_of(**_PRODUCTION, SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https")
    assert prod["DEBUG"] is False
    assert prod["SECURE_HSTS_SECONDS"] == 31_536_000 and prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert prod["SESSION_COOKIE_SECURE"] is True and prod["CSRF_COOKIE_SECURE"] is True
    assert prod["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    dev = _settings_of()
    assert dev["SECURE_HSTS_SECONDS"] == 0 and dev["SESSION_COOKIE_SECURE"] is False
    assert dev["SECURE_PROXY_SSL_HEADER"] is None
    tuned = _settings_of(**_PRODUCTION, SECURE_HSTS_SECONDS="600", SECURE_SSL_REDIRECT="1")
    assert tuned["SECURE_HSTS_SECONDS"] == 600 and tuned["SECURE_SSL_REDIRECT"] is True


def test_malformed_proxy_header_fails_naming_it():
    result = _django_setup(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert result.returncode != 0 and "SECURE_PROXY_SSL_HEADER" in result.stderr
