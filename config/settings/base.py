"""Settings read from the environment, with embedded defaults that need no external service.

Every setting that varies between deployments comes from an environment variable named after it.
With none set, Lungmark runs on a SQLite file and a filesystem broker under ``var/``.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parents[2]
# Where the embedded defaults keep their state (database, broker folder, media).
VAR_DIR = Path(os.environ.get("LUNGMARK_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def installed(module: str) -> bool:
    """Whether an optional package can be imported (web-only ones are left out of a worker's install)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


# --- core -------------------------------------------------------------------------------------
# SECRET_KEY: signs sessions and keys the DICOM pseudonyms; production refuses to start without it.
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-insecure-key-change-me")
# DEBUG: development conveniences; never on in production.
DEBUG = env_bool("DEBUG", True)
# ALLOWED_HOSTS: comma-separated host names the site answers to.
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
# CSRF_TRUSTED_ORIGINS: comma-separated origins allowed to POST with a session (behind a proxy).
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "annotator.admin_site.LungmarkAdminConfig",  # django.contrib.admin with its site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    # The API docs' assets: web only, so a worker installed from requirements-worker.txt runs without them.
    *(["drf_spectacular_sidecar"] if installed("drf_spectacular_sidecar") else []),
    "django_celery_results",
    "django_celery_beat",
    "axes",
    "csp",
    "annotator",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "annotator.middleware.RefuseNulBytes",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Role and size checks from the headers, before the CSRF check reads a form body.
    "annotator.middleware.EarlyRefusal",
    "django.middleware.csrf.CsrfViewMiddleware",
    "annotator.middleware.PageErrors",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
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
                "annotator.context_processors.roles",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------
# DATABASE_URL: postgres://user:pass@host:5432/name in production; a SQLite file by default.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'lungmark.sqlite3'}"),
        # DB_CONN_MAX_AGE: seconds a connection is reused (persistent connections save a connect per request).
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and the worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -------------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Lockout (annotator/lockout.py): per (user name, address) pair and per address, never per user
# name alone, so nobody can lock an account's owner out of every address.
# AXES_FAILURE_LIMIT: failed logins for one user name from one address before that pair is locked.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# AXES_ADDRESS_FAILURE_LIMIT: failed logins from one address, any user names, before the address is locked.
AXES_ADDRESS_FAILURE_LIMIT = env_int("AXES_ADDRESS_FAILURE_LIMIT", 30)
# AXES_COOLOFF_HOURS: how long a lockout lasts.
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_HOURS", 1)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "annotator.lockout.PairAndAddressLockout"
AXES_CLIENT_IP_CALLABLE = "annotator.lockout.client_address"
AXES_RESET_ON_SUCCESS = True
AXES_ENABLED = env_bool("AXES_ENABLED", True)
# TRUSTED_PROXY_COUNT: reverse proxies in front of the app that append the client's address to
# X-Forwarded-For (1 behind deploy/nginx.conf); 0 = the socket's peer is the client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# --- i18n -------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- static and media -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
# MEDIA_ROOT: where originals, derivatives, exports and checkpoints are stored.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"
# MEDIA_INTERNAL_REDIRECT: a prefix (e.g. /protected/) for the web server's X-Accel-Redirect; empty = Django streams.
MEDIA_INTERNAL_REDIRECT = os.environ.get("MEDIA_INTERNAL_REDIRECT", "")
WHITENOISE_USE_FINDERS = True


def storages_from_env(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``STORAGES``: the folder MEDIA_ROOT, or an S3-compatible bucket when one is named.

    Every stored file (originals, derivatives, exports, checkpoints, training runs) goes through the
    ``default`` storage, so web and workers on different hosts see the same files.
    """
    static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    # AWS_STORAGE_BUCKET_NAME: the bucket that holds every stored file; empty = the folder MEDIA_ROOT.
    bucket = environ.get("AWS_STORAGE_BUCKET_NAME", "")
    if not bucket:
        return {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}, "staticfiles": static}
    # AWS_S3_ENDPOINT_URL: the object store's address as web and workers reach it (MinIO, Ceph); empty = AWS.
    endpoint = environ.get("AWS_S3_ENDPOINT_URL", "") or None
    options = {
        "bucket_name": bucket,
        "endpoint_url": endpoint,
        # AWS_S3_PUBLIC_ENDPOINT_URL: the object store's address as browsers reach it (presigned media links); empty = AWS_S3_ENDPOINT_URL.
        "public_endpoint_url": environ.get("AWS_S3_PUBLIC_ENDPOINT_URL", "") or endpoint,
        # AWS_S3_ACCESS_KEY_ID, AWS_S3_SECRET_ACCESS_KEY: the bucket's credentials (empty = boto3's own lookup, e.g. an instance role).
        "access_key": environ.get("AWS_S3_ACCESS_KEY_ID", "") or None,
        "secret_key": environ.get("AWS_S3_SECRET_ACCESS_KEY", "") or None,
        # AWS_S3_REGION_NAME: the bucket's region.
        "region_name": environ.get("AWS_S3_REGION_NAME", "") or "us-east-1",
        # AWS_LOCATION: a key prefix for everything Lungmark stores in the bucket.
        "location": environ.get("AWS_LOCATION", ""),
        # AWS_S3_ADDRESSING_STYLE: "path" (MinIO and most self-hosted stores; the default with an endpoint) or "virtual".
        "addressing_style": environ.get("AWS_S3_ADDRESSING_STYLE", "") or ("path" if endpoint else None),
        # AWS_QUERYSTRING_EXPIRE: seconds a presigned media link stays valid (given out only after the permission check).
        "querystring_expire": int(environ.get("AWS_QUERYSTRING_EXPIRE") or 60),
        "signature_version": "s3v4",
        "querystring_auth": True,
        "default_acl": None,
        # Like the local folder: a name in use gets a new one, nothing is overwritten by accident.
        "file_overwrite": False,
        # Objects larger than this are spooled to a temporary file when read, not held in memory.
        "max_memory_size": 16 * 1024 * 1024,
    }
    return {"default": {"BACKEND": "annotator.storage.MediaS3Storage", "OPTIONS": options}, "staticfiles": static}


def media_origin(storages: dict[str, dict[str, Any]]) -> str | None:
    """The origin browsers load presigned media links from (None with a local media folder)."""
    options = storages["default"].get("OPTIONS", {})
    if "bucket_name" not in options:
        return None
    url = options["public_endpoint_url"] or f"https://{options['bucket_name']}.s3.{options['region_name']}.amazonaws.com"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


STORAGES = storages_from_env(os.environ)
# WORKER_CACHE_DIR: a local folder where a worker keeps what it fetched from remote storage
# (checkpoints by sha256, export snapshots) and its training runs while they train.
WORKER_CACHE_DIR = Path(os.environ.get("WORKER_CACHE_DIR") or Path(tempfile.gettempdir()) / "lungmark-cache")

# --- uploads and import limits ----------------------------------------------------------------
# MAX_UPLOAD_BYTES: the largest single radiograph file accepted (checked before decoding).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 64 * 1024 * 1024)
# MAX_IMAGE_PIXELS: the largest pixel count accepted (decompression-bomb guard, checked before decoding).
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000)
# MAX_ZIP_BYTES: the largest uploaded zip (and the largest total it may expand to).
MAX_ZIP_BYTES = env_int("MAX_ZIP_BYTES", 1024 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# PSEUDONYM_KEY: keys the pseudonyms of patient identifiers (defaults to one derived from SECRET_KEY).
PSEUDONYM_KEY = os.environ.get("PSEUDONYM_KEY", "") or f"pseudonym:{SECRET_KEY}"
# KEEP_SOURCE_NAMES: store uploaded file names and show them to admins (off: names often identify patients).
KEEP_SOURCE_NAMES = env_bool("KEEP_SOURCE_NAMES", False)
# BURNED_IN_EXCLUDE_SECONDARY_CAPTURE: exclude DICOM secondary captures that do not say they carry no burned-in text.
BURNED_IN_EXCLUDE_SECONDARY_CAPTURE = env_bool("BURNED_IN_EXCLUDE_SECONDARY_CAPTURE", True)

# --- workflow ---------------------------------------------------------------------------------
# LEASE_SECONDS: how long a queue hands a radiograph to one person before it may go to another.
LEASE_SECONDS = env_int("LEASE_SECONDS", 15 * 60)

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "annotator.authentication.EarlyTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["annotator.permissions.HasRole"],
    # drf-spectacular's AutoSchema plus the documented error responses of every operation.
    "DEFAULT_SCHEMA_CLASS": "annotator.apis.schema.ErrorDocumentingSchema",
    "EXCEPTION_HANDLER": "annotator.apis.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lungmark API",
    "DESCRIPTION": "Chest X-ray annotation and review with CMTNet pre-annotation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs need a sign-in (any role, or a token); the docs' assets come from the
    # app's own static files, as the content security policy allows no other origin.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One schema name per choice set shared by several fields.
    "ENUM_NAME_OVERRIDES": {
        "TriStateEnum": "annotator.constants.Tri",
        "ExclusionReasonEnum": "annotator.constants.ExclusionReason",
        "FindingLabelEnum": "annotator.constants.FindingLabel",
        "FindingLabelInputEnum": "annotator.constants.FINDING_INPUT_CHOICES",
        "ProvenanceEnum": "annotator.constants.Provenance",
        "ViewEnum": "annotator.constants.View",
        "LungStatusEnum": "annotator.constants.LungStatus",
        "RegionStatusEnum": "annotator.constants.RegionStatus",
        "PreannotationStatusEnum": "annotator.constants.PreannotationStatus",
        "ExportStatusEnum": "annotator.constants.ExportStatus",
    },
}

# --- Celery -----------------------------------------------------------------------------------
# CELERY_BROKER_URL: redis://host:6379/0 in production; a server-less filesystem broker by default.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_FOLDER = Path(os.environ.get("CELERY_BROKER_FOLDER", VAR_DIR / "broker"))
# CELERY_TASK_TIME_LIMIT: hard limit (s) for model work; the Redis visibility timeout stays above it.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 4 * 3600)
# CELERY_VISIBILITY_TIMEOUT: seconds before an unacknowledged Redis task is redelivered.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 600)
# CELERY_UNACKED_RESTORE_INTERVAL: how often (s) a worker looks for tasks lost by a killed worker.
CELERY_UNACKED_RESTORE_INTERVAL = env_int("CELERY_UNACKED_RESTORE_INTERVAL", 60)
# CELERY_TASK_ALWAYS_EAGER: run tasks inline (only for quick experiments; tests use a real worker).
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# PREANNOTATE_MAX_ATTEMPTS: a radiograph that kills this many workers is marked failed.
PREANNOTATE_MAX_ATTEMPTS = env_int("PREANNOTATE_MAX_ATTEMPTS", 3)
# PREANNOTATE_REGION_LABEL: finding label of model-suggested disease regions (CMTNet predicts a mask,
# not a finding); the radiologist changes it while reviewing.
PREANNOTATE_REGION_LABEL = os.environ.get("PREANNOTATE_REGION_LABEL", "consolidation")
# PREANNOTATE_MASK_THRESHOLD: probability above which a pixel is lung / disease.
PREANNOTATE_MASK_THRESHOLD = float(os.environ.get("PREANNOTATE_MASK_THRESHOLD", "0.5"))
# PREANNOTATE_MIN_REGION_FRACTION: smallest suggested region, as a fraction of the image's pixels.
PREANNOTATE_MIN_REGION_FRACTION = float(os.environ.get("PREANNOTATE_MIN_REGION_FRACTION", "0.001"))
# PREANNOTATE_MAX_REGIONS: most suggested regions kept per radiograph (the largest ones).
PREANNOTATE_MAX_REGIONS = env_int("PREANNOTATE_MAX_REGIONS", 10)
# PREANNOTATE_BATCH_SIZE: radiographs per pre-annotation task and forward pass; 0 = by INFERENCE_DEVICE
# (32 on CUDA, 1 on the CPU, fastest there); set it where web nodes lack the GPU workers' device.
PREANNOTATE_BATCH_SIZE = env_int("PREANNOTATE_BATCH_SIZE", 0)
# PREANNOTATE_TIME_LIMIT: hard time limit (s) of one pre-annotation task (one chunk); the soft limit is 30 s less.
PREANNOTATE_TIME_LIMIT = env_int("PREANNOTATE_TIME_LIMIT", 600)
# PREANNOTATE_TEST_DELAY: tests only: seconds a pre-annotation waits after counting its attempt.
PREANNOTATE_TEST_DELAY = float(os.environ.get("PREANNOTATE_TEST_DELAY", "0"))
# INFERENCE_DEVICE: device for model work; "auto" uses CUDA when the worker has it.
INFERENCE_DEVICE = os.environ.get("INFERENCE_DEVICE", "auto")
# INFERENCE_THREADS: CPU threads for inference in a worker process (0 = one per usable core).
INFERENCE_THREADS = env_int("INFERENCE_THREADS", 0)
# MODEL_MAX_BYTES: largest checkpoint the registry accepts.
MODEL_MAX_BYTES = env_int("MODEL_MAX_BYTES", 2 * 1024**3)
# PROMOTION_TOLERANCE: a candidate may be this much below the active model on a gate metric.
PROMOTION_TOLERANCE = float(os.environ.get("PROMOTION_TOLERANCE", "0"))
# RETRAIN_MIN_NEW_ACCEPTED: newly accepted radiographs needed before periodic retraining starts.
RETRAIN_MIN_NEW_ACCEPTED = env_int("RETRAIN_MIN_NEW_ACCEPTED", 50)
# RETRAIN_INTERVAL_SECONDS: how often beat checks whether to retrain.
RETRAIN_INTERVAL_SECONDS = env_int("RETRAIN_INTERVAL_SECONDS", 3600)
# TRAINING_PRESET: the training preset (training/presets.py) of runs started without one, periodic
# and bootstrap runs included; "auto" picks the preset for the training device.
TRAINING_PRESET = os.environ.get("TRAINING_PRESET", "auto")
# TRAINING_OVERRIDES: JSON of preset settings changed for every run (epochs, width, image_size,
# batch_size, lr), e.g. '{"epochs": 3}' for a quick look; a run's own overrides win.
TRAINING_OVERRIDES = json.loads(os.environ.get("TRAINING_OVERRIDES") or "{}")
# TRAINING_NPROC: processes sharing one training run (DDP, training/distributed.py): a number, or "auto"
# for one per CUDA device of the worker (1 on the CPU).
TRAINING_NPROC = os.environ.get("TRAINING_NPROC", "auto")
# BOOTSTRAP_TRAINING_OVERRIDES: preset settings changed for the first model, which exists to start the
# suggestions (validation lung Dice levels off after 6-10 epochs on the sample); later runs train fully.
BOOTSTRAP_TRAINING_OVERRIDES = json.loads(os.environ.get("BOOTSTRAP_TRAINING_OVERRIDES") or '{"epochs": 6}')
# BOOTSTRAP_MIN_ANNOTATED: annotated radiographs needed before the first model trains by itself.
BOOTSTRAP_MIN_ANNOTATED = env_int("BOOTSTRAP_MIN_ANNOTATED", 20)

# --- logging ----------------------------------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- security headers (enforced CSP; strict in every environment) ------------------------------
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
# With a bucket, images come from presigned links at the object store's public address.
if _media_origin := media_origin(STORAGES):
    for _directive in ("img-src", "connect-src"):
        CONTENT_SECURITY_POLICY["DIRECTIVES"][_directive].append(_media_origin)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the ES modules read it to send X-CSRFToken
