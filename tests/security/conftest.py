"""Two tenants, seeded once per module: A acts, B is the victim whose data must never change.

The root conftest wipes every backend before each test; here one seed serves the whole generated module (hundreds of
calls), so ``clean_backends`` is replaced by the module fixture ``tenants``, which wipes once and seeds A and B. Each
test compares B's data read back directly before and after its call, so a test never relies on its predecessors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from chroma import services as chroma_services
from chroma import store as chroma_store
from core.integrations import chroma as chroma_adapter
from core.integrations.firebase import get_firestore
from core.integrations.redis import get_redis
from core.integrations.rtdb import reference
from firebase_data.demo_tenant import DemoSummary, build_demo_tenant

A, B = "sec_alice", "sec_bob"
B_TELEGRAM = "bob_on_telegram"


@dataclass
class Tenant:
    uid: str
    demo: DemoSummary
    collection: str  # a Chroma collection the user created
    space_collection: str  # a Chroma collection named after the user's first space

    @property
    def mandate_path(self) -> str:
        return self.demo.mandate_paths[0]

    @property
    def space(self) -> str:
        return self.demo.space_codes[0]


@pytest.fixture
def clean_backends() -> None:
    """Replaces the root conftest's per-test wipe: ``tenants`` wipes once per module."""


def _seed(uid: str) -> Tenant:
    demo = build_demo_tenant(uid)
    short = uid.removeprefix("sec_")  # names and ids without the uid: answers are searched for B's uid (leaks)
    tenant = Tenant(uid, demo, collection=f"notes_{short}", space_collection=demo.space_codes[0])
    for name in (tenant.collection, tenant.space_collection):
        chroma_services.add_documents(collection_name=name, owner=uid, documents=[f"{uid} private note"],
                                      ids=[f"doc_{short}"])
        chroma_services.register_collection_user(user_id=uid, collection_name=name, session_id=f"{uid}_session")
        # No expiry while the module runs: a registration timing out between two snapshots is not a change by A.
        get_redis().persist(chroma_services.registration_key(user_id=uid, collection_name=name))
    db = get_firestore()
    db.document(f"clients/{uid}/billing/current_balance").set({"current_balance": "10.00", "currency": "chf"})
    return tenant


@pytest.fixture(scope="module")
def tenants(stack) -> tuple[Tenant, Tenant]:
    stack.wipe()
    chroma_adapter.reset_clients()
    chroma_store.forget_cached_collections()
    client = chroma_adapter.get_chroma()
    for collection in client.list_collections():
        client.delete_collection(collection.name)
    a, b = _seed(A), _seed(B)
    db = get_firestore()
    db.document(f"telegram_users/{B_TELEGRAM}").set({"telegram_username": B_TELEGRAM, "is_active": True,
                                                     "authorized_mandates": {b.mandate_path: {"firebase_user_id": B}}})
    scheduler_id = b.mandate_path.replace("/", "_") + "_daily"
    db.document(f"scheduler/{scheduler_id}").set({"mandate_path": b.mandate_path, "user_id": B, "enabled": True})
    yield a, b
    stack.wipe()


def snapshot(tenant: Tenant) -> dict[str, Any]:
    """Everything of B's, read back directly from Firestore, the Realtime DB, Chroma and Redis."""
    db = get_firestore()
    uid = tenant.uid
    firestore: dict[str, Any] = {}
    for collection in db.document(f"clients/{uid}").collections():
        for document in collection.recursive().stream():
            firestore[document.reference.path] = document.to_dict()
    for path in (f"clients/{uid}", f"users/{uid}", f"telegram_users/{B_TELEGRAM}"):
        document = db.document(path).get()
        firestore[path] = document.to_dict() if document.exists else None
    firestore["scheduler"] = {s.id: s.to_dict() for s in db.collection("scheduler").stream() if uid in s.id}
    rtdb = {path: reference(path).get() for path in [f"clients/{uid}", *tenant.demo.space_codes]}
    client = chroma_adapter.get_chroma()
    chroma = {}
    for name in (tenant.collection, tenant.space_collection):
        collection = client.get_collection(name, embedding_function=None)
        chroma[name] = (collection.metadata, collection.get(include=["documents", "metadatas"]))
    redis = {key: get_redis().hgetall(key) for key in sorted(get_redis().scan_iter(f"registry:chroma:{uid}:*"))}
    return {"firestore": firestore, "rtdb": rtdb, "chroma": chroma, "redis": redis}
