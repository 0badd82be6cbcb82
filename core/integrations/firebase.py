"""Firebase Admin app and Firestore clients.

Credentials: a service account (``GOOGLE_APPLICATION_CREDENTIALS`` path or ``FIREBASE_ADMIN_JSON`` content), or, when
``FIRESTORE_EMULATOR_HOST`` is set, anonymous credentials: ``firestore.client()`` would otherwise call
``google.auth.default()``, which probes the GCE metadata server (off-loopback traffic) and then fails.
"""
from __future__ import annotations

import json
import os
import threading

import firebase_admin
from django.conf import settings
from firebase_admin import credentials
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

APP_NAME = "gateway"
_lock = threading.RLock()  # get_firestore() -> get_firebase_app() nest
_app: firebase_admin.App | None = None
_firestore: firestore.Client | None = None


class _EmulatorCredential(credentials.Base):
    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()


def uses_firestore_emulator() -> bool:
    return bool(settings.FIRESTORE_EMULATOR_HOST)


def _export_emulator_env() -> None:
    # google-cloud-firestore and firebase_admin.db read these from os.environ, not from Django settings.
    os.environ.setdefault("NO_GCE_CHECK", "true")
    if settings.FIRESTORE_EMULATOR_HOST:
        os.environ["FIRESTORE_EMULATOR_HOST"] = settings.FIRESTORE_EMULATOR_HOST
    if settings.FIREBASE_DATABASE_EMULATOR_HOST:
        os.environ["FIREBASE_DATABASE_EMULATOR_HOST"] = settings.FIREBASE_DATABASE_EMULATOR_HOST


def _credential() -> credentials.Base:
    if settings.FIREBASE_ADMIN_JSON:
        return credentials.Certificate(json.loads(settings.FIREBASE_ADMIN_JSON))
    if settings.GOOGLE_APPLICATION_CREDENTIALS:
        return credentials.Certificate(settings.GOOGLE_APPLICATION_CREDENTIALS)
    return _EmulatorCredential()


def realtime_db_url() -> str:
    if settings.FIREBASE_REALTIME_DB_URL:
        return settings.FIREBASE_REALTIME_DB_URL
    # Emulator/stand-in: an http URL with ?ns= addresses it directly (firebase_admin.db._parse_emulator_url).
    return f"http://{settings.FIREBASE_DATABASE_EMULATOR_HOST}?ns={settings.FIREBASE_PROJECT_ID}"


def get_firebase_app() -> firebase_admin.App:
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _export_emulator_env()
                options = {"projectId": settings.FIREBASE_PROJECT_ID, "databaseURL": realtime_db_url()}
                _app = firebase_admin.initialize_app(_credential(), options, name=APP_NAME)
    return _app


def new_firestore_client() -> firestore.Client:
    """A fresh client with its own gRPC channel; the listeners worker spreads watch streams over several."""
    app = get_firebase_app()
    return firestore.Client(project=app.project_id, credentials=app.credential.get_credential())


def get_firestore() -> firestore.Client:
    global _firestore
    if _firestore is None:
        with _lock:
            if _firestore is None:
                _firestore = new_firestore_client()
    return _firestore


def describe() -> dict[str, str]:
    """What /debug shows: which Firestore this process talks to (never a credential)."""
    info = {"project_id": settings.FIREBASE_PROJECT_ID}
    if settings.FIRESTORE_EMULATOR_HOST:
        info["emulator_host"] = settings.FIRESTORE_EMULATOR_HOST
    return info


def ping(timeout_s: float = 3.0) -> bool:
    """One cheap read; a missing document is fine, an unreachable server is not."""
    from google.api_core import exceptions as gexc

    try:
        get_firestore().collection("_health").document("ping").get(timeout=timeout_s, retry=None)
        return True
    except (gexc.GoogleAPIError, OSError, ValueError):
        return False


def reset_clients() -> None:
    global _app, _firestore
    with _lock:
        if _firestore is not None:
            _firestore.close()
        _firestore = None
        if _app is not None:
            firebase_admin.delete_app(_app)
        _app = None
