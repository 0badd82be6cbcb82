"""Firestore ``Listen`` streams over asyncio gRPC, for the listeners worker.

The SDK's ``on_snapshot`` runs each watch on two threads whose gRPC waits poll every 100 ms, so a process holding
thousands of watches spends its CPU waking threads (measured: 800 watches already saturate two cores). The worker
instead runs every watch on one event loop, over clients made here.

Each client gets its own connection (``grpc.use_local_subchannel_pool``): gRPC otherwise shares one connection
between channels with identical arguments, and Firestore serves about 100 concurrent streams per connection.
"""
from __future__ import annotations

import grpc
from django.conf import settings
from google.cloud.firestore_v1.services.firestore import FirestoreAsyncClient
from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcAsyncIOTransport

from .firebase import get_firebase_app

FIRESTORE_HOST = "firestore.googleapis.com"
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]
# As the SDK does for Firestore itself. Not for the emulator: its server answers pings every 30 s with GOAWAY
# "too_many_pings", which drops every stream of the connection.
_KEEPALIVE = [("grpc.keepalive_time_ms", 30_000)]


def new_listen_api() -> FirestoreAsyncClient:
    """A Firestore API client on a dedicated connection. Call it on the event loop that will use it."""
    if settings.FIRESTORE_EMULATOR_HOST:
        channel = grpc.aio.insecure_channel(settings.FIRESTORE_EMULATOR_HOST, options=_CHANNEL_OPTIONS)
    else:
        credential = get_firebase_app().credential.get_credential()
        channel = FirestoreGrpcAsyncIOTransport.create_channel(
            FIRESTORE_HOST, credentials=credential, options=_CHANNEL_OPTIONS + _KEEPALIVE
        )
    return FirestoreAsyncClient(transport=FirestoreGrpcAsyncIOTransport(channel=channel))
