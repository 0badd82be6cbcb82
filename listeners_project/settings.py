"""Settings, read only from the environment (django-environ).

Two modes, chosen by ``GATEWAY_MODE``:

* ``LOCAL`` (default): DEBUG on, embedded defaults that match what ``manage.py devstack`` starts (Valkey, the
  Firestore emulator, the Realtime DB stand-in, an embedded Chroma directory), a generated dev token.
* ``PROD``: DEBUG off, and the process refuses to start, naming the variable, when a required secret or endpoint
  is missing. Nothing falls back silently to a local service in production.

Every variable is documented in README.md and .env.example.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# Local state of the dev stack (SQLite, embedded Chroma, pidfiles, logs); tests point it at a temp dir.
STATE_DIR = Path(env.str("DEVSTACK_STATE_DIR", default=str(BASE_DIR / ".devstack"))).resolve()

GATEWAY_MODE = env.str("GATEWAY_MODE", default="LOCAL").upper()
if GATEWAY_MODE not in {"LOCAL", "PROD"}:
    raise ImproperlyConfigured(f"GATEWAY_MODE must be LOCAL or PROD, not {GATEWAY_MODE!r}")
IS_PROD = GATEWAY_MODE == "PROD"


def _required_in_prod(name: str, local_default: str = "") -> str:
    """Return the variable, or the local default; in PROD a missing value stops the process with its name."""
    value = env.str(name, default="")
    if value:
        return value
    if IS_PROD:
        raise ImproperlyConfigured(f"{name} is required when GATEWAY_MODE=PROD (see README, Configuration)")
    return local_default


# --- Django core -------------------------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=not IS_PROD)
def _local_secret_key() -> str:
    """LOCAL: a random key kept in the state dir (like the dev service token), so a /ws user token or an admin
    cookie signed for one checkout is worthless against another; never a constant anyone can read in this file."""
    path = STATE_DIR / "secret-key"
    if not path.exists():
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd, draft = tempfile.mkstemp(dir=STATE_DIR, prefix=".secret-key-")  # created 0600
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)  # atomic, and refuses to replace: of two processes starting at once, one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(draft)
    return path.read_text().strip()


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or (
    _required_in_prod("DJANGO_SECRET_KEY") if IS_PROD else _local_secret_key()
)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if IS_PROD else ["*"])
if IS_PROD and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required when GATEWAY_MODE=PROD")
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "listeners_project.apps.GatewayAdminConfig",  # django.contrib.admin with the gateway dashboard (listeners_project/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "listeners_project.apps.GatewayConfig",
    "rpc",
    "realtime",
    "jobs",
    "registry",
    "chroma",
    "workflows",
    "firebase_data",
    "billing",
    "devstack",
]

MIDDLEWARE = [
    "core.logging.TraceIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "listeners_project.urls"
ASGI_APPLICATION = "listeners_project.asgi.application"
WSGI_APPLICATION = None

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

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{STATE_DIR / 'gateway.sqlite3'}")
    if (env.str("DATABASE_URL", default="") or not IS_PROD)
    else {},
}
if IS_PROD and not env.str("DATABASE_URL", default=""):
    raise ImproperlyConfigured("DATABASE_URL is required when GATEWAY_MODE=PROD (PostgreSQL recommended)")
# Persistent connections: RPC worker threads and the listeners worker touch the DB often (0 = one per request).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60 if IS_PROD else 0)
if DATABASES["default"].get("ENGINE", "").endswith("sqlite3"):
    # The dev stack's SQLite is shared by the ASGI server, the worker and commands: take the write lock up front and
    # wait for it instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["listeners_project.formats"]  # admin times with seconds and zone (formats/en/formats.py)
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(STATE_DIR / "static"))
# Admin messages stay server-side: the one-time API client token is shown in one (rpc/admin.py), never in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

if IS_PROD:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- Service identity ------------------------------------------------------------------------------------------------
SERVICE_VERSION = env.str("SERVICE_VERSION", default="1.0.0")
AWS_REGION_NAME = env.str("AWS_REGION_NAME", default="local")
PORT = env.int("PORT", default=8090)

# --- Auth --------------------------------------------------------------------------------------------------------------
# Empty means: no service token. API clients created in the admin can still call; with neither, every call is refused.
LISTENERS_SERVICE_TOKEN = _required_in_prod("LISTENERS_SERVICE_TOKEN")

# --- RPC -----------------------------------------------------------------------------------------------------------------
RPC_API_VERSION = env.str("RPC_API_VERSION", default="v1")
RPC_IDEMP_TTL = env.int("RPC_IDEMP_TTL", default=900)
RPC_IDEMP_DISABLE = env.bool("RPC_IDEMP_DISABLE", default=False)
RPC_IDEMP_DISABLE_METHODS = frozenset(env.list("RPC_IDEMP_DISABLE_METHODS", default=[]))
RPC_MAX_BODY_BYTES = env.int("RPC_MAX_BODY_BYTES", default=1024 * 1024)
# Every other Django view (admin forms, the Stripe webhook) gets a bound too; /rpc answers over-size bodies itself,
# with the contract's 413 envelope, before Django's limit can apply.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(RPC_MAX_BODY_BYTES, 2_621_440)
RPC_REPLY_PREFIX = env.str("RPC_REPLY_PREFIX", default="redis:reply:")
RPC_DEFAULT_TIMEOUT_MS = 15000
RPC_MAX_TIMEOUT_MS = 120000
RPC_WORKER_THREADS = env.int("RPC_WORKER_THREADS", default=64)
# How long a user's spaces stay cached (core/tenancy.py); a new or removed mandate is honoured within 5 s.
TENANT_SPACES_CACHE_SECONDS = env.float("TENANT_SPACES_CACHE_SECONDS", default=4.0)

# --- Redis -----------------------------------------------------------------------------------------------------------
LOCAL_REDIS_PORT = env.int("DEVSTACK_REDIS_PORT", default=6399)


def _redis_url() -> str:
    """REDIS_URL wins; else the seed's LISTENERS_REDIS_* / USE_LOCAL_REDIS; else the dev stack's embedded Valkey."""
    url = env.str("REDIS_URL", default="")
    if url:
        return url
    db = env.int("LISTENERS_REDIS_DB", default=0)
    if env.bool("USE_LOCAL_REDIS", default=False):
        return f"redis://127.0.0.1:6379/{db}"
    host = env.str("LISTENERS_REDIS_HOST", default="")
    if host:
        scheme = "rediss" if env.bool("LISTENERS_REDIS_TLS", default=False) else "redis"
        password = env.str("LISTENERS_REDIS_PASSWORD", default="")
        auth = f":{password}@" if password else ""
        port = env.int("LISTENERS_REDIS_PORT", default=6379)
        return f"{scheme}://{auth}{host}:{port}/{db}"
    if IS_PROD:
        raise ImproperlyConfigured("REDIS_URL (or LISTENERS_REDIS_HOST) is required when GATEWAY_MODE=PROD")
    return f"redis://127.0.0.1:{LOCAL_REDIS_PORT}/{db}"


REDIS_URL = _redis_url()
REDIS_TLS_VERIFY = env.bool("LISTENERS_REDIS_TLS_VERIFY", default=True)
# true: REDIS_URL (or LISTENERS_REDIS_HOST/PORT) names a Redis Cluster's configuration endpoint, e.g. ElastiCache Valkey
# Serverless, which is always cluster mode. Every client is then cluster-aware (core/integrations/redis.py).
REDIS_CLUSTER = env.bool("LISTENERS_REDIS_CLUSTER", default=False)
# Cluster only: reads that tolerate replica lag may go to replicas (none of the gateway's scripts do).
REDIS_READ_FROM_REPLICAS = env.bool("LISTENERS_REDIS_READ_FROM_REPLICAS", default=False)

# --- Events, presence, history ---------------------------------------------------------------------------------------------
LISTENERS_CHANNEL_PREFIX = env.str("LISTENERS_CHANNEL_PREFIX", default="user:")
LISTENERS_CHAT_CHANNEL_PREFIX = env.str("LISTENERS_CHAT_CHANNEL_PREFIX", default="chat:")
# One message here carries an event for many users (publish_to_many); every gateway process delivers it locally.
LISTENERS_FANOUT_CHANNEL = env.str("LISTENERS_FANOUT_CHANNEL", default="fanout:user")
LISTENERS_TTL_SECONDS = env.int("LISTENERS_TTL_SECONDS", default=90)
LISTENERS_HEARTBEAT_INTERVAL = env.int("LISTENERS_HEARTBEAT_INTERVAL", default=30)
LISTENERS_HISTORY_SIZE = env.int("LISTENERS_HISTORY_SIZE", default=300)
LISTENERS_HISTORY_TTL = env.int("LISTENERS_HISTORY_TTL", default=600)
# Provenance records for the console's trace page (core/provenance.py): Redis holds rate x TTL of them, ~300 B each.
CONSOLE_TRACE_TTL = env.int("CONSOLE_TRACE_TTL", default=LISTENERS_HISTORY_TTL)
LISTENERS_DETACH_GRACE_S = env.int("LISTENERS_DETACH_GRACE_S", default=60)
# Listeners worker (manage.py run_listeners; its command options override these).
LISTENERS_WORKER_ID = env.str("LISTENERS_WORKER_ID", default="")  # default: hostname-pid
LISTENERS_LEASE_TTL_S = env.float("LISTENERS_LEASE_TTL_S", default=15.0)
LISTENERS_STALL_S = env.float("LISTENERS_STALL_S", default=120.0)
LISTENERS_STREAMS_PER_CONNECTION = env.int("LISTENERS_STREAMS_PER_CONNECTION", default=90)
LISTENERS_WORKER_THREADS = env.int("LISTENERS_WORKER_THREADS", default=8)
LISTENERS_METRICS_PORT = env.int("LISTENERS_METRICS_PORT", default=0)
LISTENERS_WS_TRUSTED_NETWORKS = env.list("LISTENERS_WS_TRUSTED_NETWORKS", default=[])
LISTENERS_WS_SEND_QUEUE = env.int("LISTENERS_WS_SEND_QUEUE", default=1000)
LISTENERS_WS_MAX_CHAT_SOCKETS = env.int("LISTENERS_WS_MAX_CHAT_SOCKETS", default=16)
WS_TOKEN_TTL_SECONDS = env.int("WS_TOKEN_TTL_SECONDS", default=300)
WORKFLOW_LISTENER_ENABLED = env.bool("WORKFLOW_LISTENER_ENABLED", default=True)
# A registered session lives this long past its last register/heartbeat (contract §3; the original's 24 h), while its
# presence member lives LISTENERS_TTL_SECONDS: the Reflex app never heart-beats, and must not be logged out for it.
REGISTRY_SESSION_TTL = env.int("REGISTRY_SESSION_TTL", default=86400)

# No CHANNEL_LAYERS: /ws is fed by one pub/sub connection per process (realtime/dispatcher.py), not a Channels layer;
# README "Choices, by measurement" gives the numbers that ruled the layer out.

# --- Firebase -------------------------------------------------------------------------------------------------------------
LOCAL_FIRESTORE_PORT = env.int("DEVSTACK_FIRESTORE_PORT", default=8086)
LOCAL_RTDB_PORT = env.int("DEVSTACK_RTDB_PORT", default=9009)
FIREBASE_PROJECT_ID = env.str("FIREBASE_PROJECT_ID", default="" if IS_PROD else "demo-gateway")
GOOGLE_APPLICATION_CREDENTIALS = env.str("GOOGLE_APPLICATION_CREDENTIALS", default="")
FIREBASE_ADMIN_JSON = env.str("FIREBASE_ADMIN_JSON", default="")
# LOCAL falls back to the dev stack's emulator only when no real project's credentials are given, so a developer
# can point a LOCAL gateway at a real Firebase project (e.g. on a machine without java).
FIRESTORE_EMULATOR_HOST = env.str(
    "FIRESTORE_EMULATOR_HOST",
    default="" if IS_PROD or GOOGLE_APPLICATION_CREDENTIALS or FIREBASE_ADMIN_JSON else f"127.0.0.1:{LOCAL_FIRESTORE_PORT}",
)
FIREBASE_DATABASE_EMULATOR_HOST = env.str("FIREBASE_DATABASE_EMULATOR_HOST", default="")
FIREBASE_REALTIME_DB_URL = env.str("FIREBASE_REALTIME_DB_URL", default="")
if not IS_PROD and not FIREBASE_DATABASE_EMULATOR_HOST and not FIREBASE_REALTIME_DB_URL:
    FIREBASE_DATABASE_EMULATOR_HOST = f"127.0.0.1:{LOCAL_RTDB_PORT}"
if IS_PROD and not FIRESTORE_EMULATOR_HOST and not (GOOGLE_APPLICATION_CREDENTIALS or FIREBASE_ADMIN_JSON):
    raise ImproperlyConfigured(
        "GOOGLE_APPLICATION_CREDENTIALS or FIREBASE_ADMIN_JSON is required when GATEWAY_MODE=PROD"
    )
if IS_PROD and not (FIREBASE_REALTIME_DB_URL or FIREBASE_DATABASE_EMULATOR_HOST):
    raise ImproperlyConfigured("FIREBASE_REALTIME_DB_URL is required when GATEWAY_MODE=PROD")

# --- Chroma ---------------------------------------------------------------------------------------------------------------
CHROMA_HOST = env.str("CHROMA_HOST", default="")
CHROMA_PORT = env.int("CHROMA_PORT", default=8000)
CHROMA_SSL = env.bool("CHROMA_SSL", default=False)
CHROMA_TENANT = env.str("CHROMA_TENANT", default="default_tenant")
CHROMA_DATABASE = env.str("CHROMA_DATABASE", default="default_database")
CHROMA_PATH = env.str("CHROMA_PATH", default=str(STATE_DIR / "chroma"))
CHROMA_AUTH_HEADER = env.str("CHROMA_AUTH_HEADER", default="")  # "Name: value", for a proxy in front of chroma run

# --- Stripe -----------------------------------------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
STRIPE_SUCCESS_URL = env.str("STRIPE_SUCCESS_URL", default="http://localhost:3000/payment-success")
STRIPE_CANCEL_URL = env.str("STRIPE_CANCEL_URL", default="http://localhost:3000/payment-canceled")

# --- DRF / OpenAPI ------------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # /rpc authenticates itself (bearer service token or API client); DRF's session/basic auth stay out of its way.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Realtime gateway RPC",
    "DESCRIPTION": "POST /rpc envelope and the registered method catalogue (see README).",
    "VERSION": SERVICE_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Logging ------------------------------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING_CONFIG = None  # configured by core.logging.configure_logging() in AppConfig.ready()

# --- PROD refuses weak settings (README, Security) ------------------------------------------------------------------------
MIN_SECRET_KEY_LENGTH = 50  # Django's own deployment check (security.W009) asks for 50 characters, 5 distinct
MIN_SERVICE_TOKEN_LENGTH = 32


def _refuse_weak_prod_settings() -> None:
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when GATEWAY_MODE=PROD")
    if len(SECRET_KEY) < MIN_SECRET_KEY_LENGTH or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY must have at least {MIN_SECRET_KEY_LENGTH} characters when GATEWAY_MODE=PROD"
        )
    if len(LISTENERS_SERVICE_TOKEN) < MIN_SERVICE_TOKEN_LENGTH:
        raise ImproperlyConfigured(
            f"LISTENERS_SERVICE_TOKEN must have at least {MIN_SERVICE_TOKEN_LENGTH} characters when GATEWAY_MODE=PROD"
        )
    for network in LISTENERS_WS_TRUSTED_NETWORKS:
        if network.strip().endswith("/0"):
            raise ImproperlyConfigured(
                "LISTENERS_WS_TRUSTED_NETWORKS may not trust every address (a /0 network) when GATEWAY_MODE=PROD"
            )


if IS_PROD:
    _refuse_weak_prod_settings()
