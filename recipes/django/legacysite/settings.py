"""Settings of the recipe's legacy site; the authshim parts are marked ``# authshim``."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("LEGACY_SECRET_KEY", "recipe-only-not-a-secret-0123456789abcdef")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", *os.environ.get("LEGACY_HOSTS", "").split()]

INSTALLED_APPS = [
    "django.contrib.admin",  # its templates give the password-reset pages
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "legacysite",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # authshim: after AuthenticationMiddleware, trust the identity header authshim sets.
    "legacysite.authshim.AuthshimUserMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
AUTHENTICATION_BACKENDS = [
    "legacysite.authshim.AuthshimUserBackend",  # authshim: users it vouches for
    "django.contrib.auth.backends.ModelBackend",  # the legacy login, until the cut-over
]
# authshim: the peers allowed to send the identity header (authshim's own address).
AUTHSHIM_PROXIES = os.environ.get("AUTHSHIM_PROXIES", "127.0.0.1 ::1").split()
# authshim: the host the browser used is in X-Forwarded-Host (CSRF's Origin check needs it).
USE_X_FORWARDED_HOST = True
# authshim: the look-up's shared secret, the whole Authorization header authshim sends
# ("Bearer <a long random string>"); authshim reads the same variable. Unset: look-up off.
AUTHSHIM_LOOKUP_AUTH = os.environ.get("LEGACY_LOOKUP_AUTH", "")

ROOT_URLCONF = "legacysite.urls"
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
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LEGACY_DB", str(BASE_DIR.parent / "legacy.sqlite3")),
    }
}
LOGIN_REDIRECT_URL = "/private/"
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = os.environ.get("LEGACY_MAIL_DIR", str(BASE_DIR.parent / "mail"))
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
