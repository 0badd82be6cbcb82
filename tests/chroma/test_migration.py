"""Collections embedded by the original (another function, 1,536-d) migrate to the bundled model as a long job."""
from __future__ import annotations

import io
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from chromadb.api.types import EmbeddingFunction
from django.core.management import call_command
from django.core.management.base import CommandError

from chroma import store
from chroma.embedding import embed
from chroma.migration import PRE_MIGRATION_SUFFIX
from core import tenancy
from core.integrations.chroma import get_chroma
from core.integrations.firebase import get_firestore
from devstack import services as devstack_services
from jobs import store as job_store
from jobs.runner import JobRunner
from tests.conftest import wait_until
from tests.realtime.wsclient import open_ws, recv_json

from .test_documents import DOCUMENTS, IDS

PARAPHRASES = [
    "settlement of the vendor bill via wire",
    "deadline for submitting the sales tax declaration",
    "a kitten napping on the couch",
    "when is the workplace shut",
]
FILLER_SUBJECTS = ["The accountant", "Our bank", "The auditor", "A customer", "The warehouse", "The payroll team"]
FILLER_ACTIONS = ["reconciled the ledger", "sent a reminder", "approved the budget", "shipped the order",
                  "updated the forecast", "archived the receipts"]
FILLER_TIMES = ["this morning", "last week", "on Friday", "before the audit", "after lunch"]


class ForeignAda002(EmbeddingFunction):
    """Stands in for the original's OpenAI function: records itself as ``openai`` and is never asked to embed
    (the collection gets explicit random vectors, as a copy of the original's data would)."""

    def __init__(self) -> None:
        """Nothing to configure."""

    def __call__(self, input: Any) -> Any:  # noqa: A002 - Chroma's protocol
        raise AssertionError("the foreign function must never be called")

    @staticmethod
    def name() -> str:
        return "openai"

    def get_config(self) -> dict[str, Any]:
        return {"model_name": "text-embedding-ada-002", "dimensions": 1536}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> ForeignAda002:
        return ForeignAda002()


def corpus(size: int) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The paraphrase test's four documents plus varied filler sentences."""
    rng = random.Random(7)
    documents, ids = list(DOCUMENTS), list(IDS)
    for n in range(size - len(documents)):
        documents.append(f"{rng.choice(FILLER_SUBJECTS)} {rng.choice(FILLER_ACTIONS)} {rng.choice(FILLER_TIMES)} "
                         f"(note {n}).")
        ids.append(f"doc-{n}")
    return documents, ids, [{"n": n, "source": "original"} for n in range(size)]


def foreign_collection(name: str, size: int, space_of: str = "user-1") -> None:
    """The original kept one collection per company, named by its space: make ``name`` a space of ``space_of`` (a
    mandate of theirs names it), which is how its users reach a collection that has no recorded owner."""
    get_firestore().document(f"clients/{space_of}/bo_clients/c1/mandates/m-{name}").set({"contact_space_id": name})
    tenancy.forget_user_spaces(space_of)
    documents, ids, metadatas = corpus(size)
    collection = get_chroma().create_collection(
        name, configuration={"embedding_function": ForeignAda002()}, embedding_function=None
    )
    vectors = np.random.default_rng(1).random((size, 1536), dtype=np.float32)
    for start in range(0, size, 1000):
        collection.add(ids=ids[start:start + 1000], embeddings=vectors[start:start + 1000],
                       documents=documents[start:start + 1000], metadatas=metadatas[start:start + 1000])


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    running = JobRunner(worker_id="test-runner", threads=1, lease_ttl_s=2.0, poll_s=0.2).start()
    yield running
    running.stop()


def top_ids(call, collection_name: str) -> list[list[str]]:
    return call("query_documents", collection_name, PARAPHRASES, 3).data["results"]["ids"]


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_a_foreign_collection_migrates_with_progress_on_the_socket(
    chroma_mode, call, rpc, collection_name, runner, live_gateway, service_token,
):
    foreign_collection(collection_name, 300)
    refused = call("query_documents", collection_name, ["anything"])
    assert refused.code == "INVALID_ARGS"
    assert f"manage.py chroma_migrate {collection_name}" in refused.body["error"]["message"]
    assert call("get_collection_info", collection_name).data["document_count"] == 300

    with open_ws(live_gateway, service_token, uid="user-1") as ws:
        wait_until(lambda: _subscribers("user:user-1") >= 1)
        started = time.monotonic()
        data = call("migrate_collection", "user-1", collection_name).data
        assert data["status"] == "queued" and data["success"] is True
        events = []
        while not (events and events[-1]["payload"]["done"]):
            event = recv_json(ws, timeout=120)
            if event["type"] == "service.progress_update" and event["payload"]["job_id"] == data["job_id"]:
                events.append(event)
        elapsed = time.monotonic() - started

    progress = [event["payload"]["progress"] for event in events]
    assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
    assert events[-1]["payload"]["status"] == "done" and events[-1]["payload"]["error"] is None
    job = rpc("REGISTRY.get_job", "user-1", data["job_id"], user_id="user-1").data
    assert job["result"] == {"collection_name": collection_name, "document_count": 300,
                             "old_collection": collection_name + PRE_MIGRATION_SUFFIX, "already_native": False}
    print(f"\nmigrated 300 documents in {elapsed:.2f} s ({len(events)} progress events)")

    assert call("get_collection_info", collection_name).data["document_count"] == 300
    old = get_chroma().get_collection(collection_name + PRE_MIGRATION_SUFFIX, embedding_function=None)
    assert old.count() == 300 and len(old.get(limit=1, include=["embeddings"])["embeddings"][0]) == 1536
    migrated = get_chroma().get_collection(collection_name, embedding_function=None)
    assert migrated.get(ids=["vat"], include=["metadatas"])["metadatas"] == [{"n": 2, "source": "original"}]

    # Re-embedded with the model a native collection uses: the very vectors add_documents would store. (Comparing the
    # top 3 of two HNSW indexes built apart compares two approximate searches: they differed once at rank 3.)
    documents, ids, _ = corpus(300)
    stored = migrated.get(ids=ids, include=["embeddings"])
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    assert np.allclose(np.array([by_id[i] for i in ids]), embed(documents), atol=1e-4)
    assert [ranked[0] for ranked in top_ids(call, collection_name)] == ["invoice", "vat", "cat", "holiday"]


def _subscribers(channel: str) -> int:
    from core.integrations.redis import subscriber_count

    return subscriber_count(channel)  # every node of a cluster (each counts only its own subscribers)


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_the_command_migrates_drops_the_old_collection_and_is_idempotent(chroma_mode, collection_name, call):
    foreign_collection(collection_name, 30)
    out = io.StringIO()
    call_command("chroma_migrate", collection_name, "--drop-old", "--json", stdout=out)
    (job,) = json.loads(out.getvalue())
    assert job["status"] == "done" and job["progress"] == 100 and job["result"]["document_count"] == 30
    names = {c.name for c in get_chroma().list_collections()}
    assert names == {collection_name}
    assert call("query_documents", collection_name, ["a kitten napping on the couch"], 1).data["results"]["ids"] == [
        ["cat"]]
    again = io.StringIO()
    call_command("chroma_migrate", collection_name, "--json", stdout=again)
    assert json.loads(again.getvalue())[0]["result"]["already_native"] is True
    with pytest.raises(CommandError, match="NOT_FOUND"):
        call_command("chroma_migrate", "no_such_collection", "--json", stdout=io.StringIO())


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_reads_that_embed_nothing_keep_working_until_migrated(chroma_mode, call, collection_name):
    foreign_collection(collection_name, 12)
    assert call("get_collection_info", collection_name).data["document_count"] == 12
    assert call("analyze_collection", collection_name).data["analysis"]["embeddings_size"] == 12 * 1536 * 4
    call("delete_documents", collection_name, kwargs={"ids": ["cat"]})
    assert call("get_collection_info", collection_name).data["document_count"] == 11
    added = call("add_documents", collection_name, ["new"])
    assert added.code == "INVALID_ARGS" and "CHROMA_VECTOR.migrate_collection" in added.body["error"]["message"]


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_a_cached_handle_of_a_collection_swapped_by_another_process_expires(chroma_mode, call, collection_name,
                                                                             monkeypatch):
    foreign_collection(collection_name, 12)
    assert call("get_collection_info", collection_name).data["document_count"] == 12  # caches the handle
    # What a migration in another process does (this process's cache is not told).
    get_chroma().get_collection(collection_name, embedding_function=None).modify(name="renamed_elsewhere")
    get_chroma().create_collection(collection_name, embedding_function=None).add(ids=["x"], embeddings=[[0.1] * 4])
    assert call("get_collection_info", collection_name).data["document_count"] == 12  # still the old handle
    monkeypatch.setattr(store, "HANDLE_MAX_AGE_S", 0.0)
    assert call("get_collection_info", collection_name).data["document_count"] == 1


@pytest.mark.parametrize("chroma_mode", ["server"], indirect=True)
def test_a_runner_killed_mid_migration_is_resumed_by_the_next_one(chroma_mode, stack, chroma_server, call,
                                                                   collection_name):
    foreign_collection(collection_name, 1200)
    env = {**os.environ, **stack.env, "CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_server.port)}

    def run_jobs(name: str):
        log = stack.run_dir / f"{name}.log"
        return devstack_services.manage_py(
            name, ["run_jobs", "--threads", "1", "--lease-ttl", "1", "--worker-id", name], stack.run_dir, env,
            ready=lambda: log.exists() and b"jobs runner" in log.read_bytes(),
        ).start()

    first = run_jobs(f"runner-a-{uuid.uuid4().hex[:6]}")
    try:
        job_id = call("migrate_collection", "user-1", collection_name).data["job_id"]
        checkpointed = wait_until(
            lambda: (job := job_store.read("user-1", job_id)) and (job.checkpoint or {}).get("offset") and job,
            timeout=120,
        )
        first.kill()
    finally:
        first.stop()
    assert checkpointed.status == "running" and checkpointed.checkpoint["offset"] < 1200
    second = run_jobs(f"runner-b-{uuid.uuid4().hex[:6]}")
    try:
        done = wait_until(lambda: (job := job_store.read("user-1", job_id)) and job.done and job, timeout=240)
    finally:
        second.stop()
    assert done.status == "done" and done.attempts == 2, done
    assert done.result["document_count"] == 1200
    assert call("get_collection_info", collection_name).data["document_count"] == 1200
    assert get_chroma().get_collection(collection_name + PRE_MIGRATION_SUFFIX, embedding_function=None).count() == 1200


@pytest.mark.parametrize("chroma_mode", ["embedded"], indirect=True)
def test_one_migration_per_collection_and_missing_collections_are_not_found(chroma_mode, call, collection_name):
    foreign_collection(collection_name, 5)
    get_firestore().document("clients/user-2/bo_clients/c1/mandates/m-shared").set({"contact_space_id": collection_name})
    tenancy.forget_user_spaces("user-2")  # user-2 works for the same company: the collection is theirs too
    first = call("migrate_collection", "user-1", collection_name).data["job_id"]  # no runner here: stays queued
    assert call("migrate_collection", "user-1", collection_name).data["job_id"] == first
    other = call("migrate_collection", "user-2", collection_name, user_id="user-2")
    assert other.code == "INVALID_ARGS" and "already in progress" in other.body["error"]["message"]
    assert call("migrate_collection", "user-1", "no_such_collection").code == "NOT_FOUND"
    assert call("migrate_collection", "user-2", collection_name).code == "PERMISSION_DENIED"  # user_id is the actor
