"""Firebase Realtime Database (real RTDB, the official emulator, or the stand-in): reads and writes through
``firebase_admin.db``, streams through rtdb_sse.py on an asyncio loop."""
from __future__ import annotations

from django.conf import settings
from firebase_admin import db, exceptions as fb_exceptions

from .firebase import get_firebase_app, realtime_db_url
from .rtdb_sse import RtdbEndpoint, RtdbStreamClient


def reference(path: str = "/") -> db.Reference:
    return db.reference(path, app=get_firebase_app())


async def new_stream_client() -> RtdbStreamClient:
    """A pool for Realtime DB streams on the running loop, addressing the database ``reference()`` does."""
    return RtdbStreamClient(RtdbEndpoint.for_app(get_firebase_app()))


def describe() -> dict[str, str]:
    info = {"url": realtime_db_url()}
    if settings.FIREBASE_DATABASE_EMULATOR_HOST:
        info["emulator_host"] = settings.FIREBASE_DATABASE_EMULATOR_HOST
    return info


def ping() -> bool:
    try:
        reference("/_health").get(shallow=True)
        return True
    except (fb_exceptions.FirebaseError, OSError, ValueError):
        return False
