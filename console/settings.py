"""Django settings for Voxfleet.

Every knob comes from the environment through ``console.env``; all of them are listed in
``.env.example``. The defaults give the embedded single-machine setup: SQLite, the
in-memory channel layer, and jobs plus the local node's agent running inside the ASGI
process. ``VOXFLEET_PRODUCTION=1`` refuses to start on any of those development defaults.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import plotly
from django.core.exceptions import ImproperlyConfigured

from console.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_header_pair,
    env_int,
    env_list,
    env_path,
    env_str,
    validate_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VOXFLEET_VAR_DIR", BASE_DIR / "var")

PRODUCTION = env_bool("VOXFLEET_PRODUCTION", False)
DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    # DEBUG pages print settings, SQL and tracebacks to anyone: never behind a public URL.
    raise ImproperlyConfigured("DEBUG must be off when VOXFLEET_PRODUCTION=1 (unset DEBUG or set DEBUG=0)")


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        if PRODUCTION and len(key) < 32:
            raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters in production")
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when VOXFLEET_PRODUCTION=1")
    # Development: generate once and keep it, so sessions survive a restart.
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when VOXFLEET_PRODUCTION=1")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

_database_url = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'voxfleet.sqlite3'}"
DATABASES = {"default": database_from_url(_database_url)}
if PRODUCTION and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL when VOXFLEET_PRODUCTION=1")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded agent writes samples every second from its own thread: take the write lock
    # at BEGIN (a deferred read->write upgrade fails at once with "database is locked" instead of
    # waiting) and use WAL so page reads don't block on those writes.
    DATABASES["default"]["OPTIONS"].update(
        {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )

REDIS_URL = env_str("REDIS_URL") or None
if REDIS_URL:
    validate_redis_url(REDIS_URL)
elif PRODUCTION:
    raise ImproperlyConfigured("REDIS_URL must be set when VOXFLEET_PRODUCTION=1")
# Embedded mode: one process is the whole product (in-memory channel layer, jobs and the
# local node's agent run inside the ASGI process).
EMBEDDED = REDIS_URL is None

OUTPUTS_DIR = env_path("OUTPUTS_DIR", BASE_DIR / "outputs")
VOXFLEET_ENGINE = env_choice("VOXFLEET_ENGINE", "cpu", ("cpu", "cosyvoice3"))
COSYVOICE_MODEL_DIR = env_path("COSYVOICE_MODEL_DIR", BASE_DIR / "models" / "CosyVoice3")
METRICS_TOKEN = env_str("METRICS_TOKEN") or None
EMBEDDED_NODE_NAME = env_str("VOXFLEET_EMBEDDED_NODE", "local-cpu")
PUBLIC_URL = env_str("VOXFLEET_PUBLIC_URL", "http://127.0.0.1:8000")

# Billing. The reserve/settle hot path on PostgreSQL uses server-side prepared statements;
# behind a transaction-pooling PgBouncer (which cannot keep them per client) set it to 0.
BILLING_FASTPATH_PREPARE = env_bool("BILLING_FASTPATH_PREPARE", True)
# Dotted path of the payment provider class (billing.payments.PaymentProvider); the default
# records charges collected outside Voxfleet (bank transfer, card terminal, contract).
BILLING_PAYMENT_PROVIDER = env_str("BILLING_PAYMENT_PROVIDER") or "billing.payments.ManualProvider"
# Usage-alert webhooks to loopback/private addresses (SSRF into the console's network): allowed
# on the development default (a receiver on this machine), refused in production.
BILLING_WEBHOOK_ALLOW_PRIVATE = env_bool("BILLING_WEBHOOK_ALLOW_PRIVATE", not PRODUCTION)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "channels",
    "console",
    "billing",
    "inference",
    "fleetagent",
]

MIDDLEWARE = [
    # First, so it times and counts every answer (voxfleet_http_requests_total by route and status).
    "console.prometheus.http_metrics_middleware",
    "console.request_id.RequestIdMiddleware",
    "console.uploads.RequestBodyCapMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "console.static_files.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Innermost: a database fault raised by a view is a JSON 503 (console.faults).
    "console.faults.DatabaseFaultMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# plotly.js comes from the plotly Python package: served locally, no CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(plotly.__file__).parent / "package_data"),
]
# Serve straight from the finders so a fresh checkout needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Voxfleet <noreply@voxfleet.local>")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout=None: redis-py 8 defaults it to 5 s, which aborts the layer's
            # blocking BZPOPMIN and tears every idle websocket down (channels_redis#422).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": None}], "capacity": 5000, "expiry": 30},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The job broker: BROKER_URL=amqp://… (RabbitMQ: multi-host fleets, one broker user per node
# that can read only its own durable queue, fleetagent.broker) or, by default, REDIS_URL
# (single-trust setups: every host shares the broker's password).
CELERY_BROKER_URL = env_str("BROKER_URL") or REDIS_URL or "memory://"
BROKER_VHOST = env_str("BROKER_VHOST", "/")
RABBITMQCTL = env_str("RABBITMQCTL", "rabbitmqctl")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_DEFAULT_QUEUE = "console"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE: dict = {
    # Fleet: heartbeat/stuck detection and 1 s -> 1 min sample rollups (fleetagent.tasks).
    "fleet-sweep": {"task": "fleetagent.sweep", "schedule": 2.0},
    "fleet-downsample": {"task": "fleetagent.downsample", "schedule": 60.0},
    # Billing: close last month's invoices once each tenant's month has ended (idempotent), expire top-ups.
    "billing-close-period": {"task": "billing.close_previous_period", "schedule": 3600.0},
    "billing-expire-topups": {"task": "billing.expire_topups", "schedule": 3600.0},
    # The staff overview's figures, recomputed into the cache (console.portal.tasks).
    "portal-staff-economics-warm": {"task": "portal.staff_economics_warm", "schedule": 60.0},
    # Usage-alert webhooks whose retry is due but whose task was lost.
    "billing-webhook-retry-due": {"task": "billing.webhook_retry_due", "schedule": 300.0},
    # Jobs: requeued jobs to nodes that came back, lost messages republished, jobs past their
    # deadline failed and released (inference.tasks.recover; every job ends within seconds).
    "inference-recover": {"task": "inference.jobs_recover", "schedule": 2.0},
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "console.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voxfleet API",
    "DESCRIPTION": "Voice-cloning synthesis, usage and quota API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response components apart, so uploads read as binary (audio) in requests.
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["console.api_schema.public_endpoints_only"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "console.api_schema.error_responses",
    ],
}

# HTTPS: production defaults on, each overridable. Behind a TLS-terminating proxy set
# SECURE_PROXY_SSL_HEADER to the header it sets (e.g. "HTTP_X_FORWARDED_PROTO,https"); only
# when the proxy always sets or strips it, or clients could claim HTTPS.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = env_header_pair("SECURE_PROXY_SSL_HEADER")
SECURE_CONTENT_TYPE_NOSNIFF = True
CSRF_FAILURE_VIEW = "console.errors.csrf_failure"
SESSION_COOKIE_HTTPONLY = True

# Request bodies (console/uploads.py): capped while streaming, before parsing or decoding.
# The largest legitimate body is a 10 MB prompt-audio upload plus its multipart envelope.
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 11 * 1024 * 1024, minimum=1024)
UPLOAD_FILE_MAX_BYTES = env_int("UPLOAD_FILE_MAX_BYTES", 10 * 1024 * 1024 + 64 * 1024, minimum=1024)
# Non-file fields (JSON and form bodies) held in memory; an upload over this goes to a temp file.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440, minimum=1024)
FILE_UPLOAD_HANDLERS = [
    "console.uploads.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Fleet heartbeat: a node silent this long is offline (PRODUCT.md, The fleet).
NODE_OFFLINE_AFTER_S = env_int("NODE_OFFLINE_AFTER_S", 10, minimum=1)
