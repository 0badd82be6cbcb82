"""The one declaration of FIREBASE_MANAGEMENT and FIREBASE_REALTIME.

Methods register with the decorator beside their function: the ``firebase_data`` domain modules (``jobs``, ``chat``,
``mandates``...) and ``billing.rpc_methods`` (the balance and top-up methods live in the same namespace, as in the
original service). ``rpc.registry.Namespace`` refuses a second declaration of either name. What the namespaces
promise callers, and what they deliberately leave out: ``firebase_data/rpc_methods.py``.
"""
from __future__ import annotations

from rpc.registry import Namespace

FIREBASE_MANAGEMENT = Namespace("FIREBASE_MANAGEMENT")  # Firestore
FIREBASE_REALTIME = Namespace("FIREBASE_REALTIME")  # Realtime Database
