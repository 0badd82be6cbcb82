"""Namespace proxies against a live gateway: every namespace, user binding/inference, unknown names, async."""
from __future__ import annotations

import asyncio
import uuid

import pytest

import gateway_client
from core.integrations.firebase import get_firestore
from gateway_client import (
    AsyncRpcClient, ChromaVectorService, FireBaseManagement, FirebaseManagement, FirebaseRealtimeChat, NotFound,
    PermissionDenied, Registry, UnknownMethod,
)


def job(job_id: str) -> dict:
    return {"job_id": job_id, "file_name": "invoice.pdf", "status": "pending", "function_name": "APbookeeper",
            "read": False}


def test_firebase_management_proxy_writes_and_reads_for_its_bound_user(client, uid):
    firebase = FirebaseManagement(client, user_id=uid)
    assert firebase.add_or_update_job_by_job_id(f"clients/{uid}/notifications", job("job-1")) == "job-1"
    assert firebase.check_job_status(uid, job_id="job-1")["status"] == "pending"
    assert [n["job_id"] for n in firebase.get_notifications(uid)] == ["job-1"]
    assert firebase.mark_notifications_read(uid, ["job-1"]) == 1


def test_a_bound_proxy_lets_the_gateway_refuse_arguments_naming_another_user(client, uid):
    firebase = FirebaseManagement(client, user_id=uid)
    with pytest.raises(PermissionDenied):
        firebase.add_or_update_job_by_job_id("clients/someone-else/notifications", job("job-2"))


def test_with_options_changes_the_call_defaults_of_a_copy_only(client, uid):
    firebase = FirebaseManagement(client, user_id=uid)
    impostor = firebase.with_options(user_id="someone-else")
    with pytest.raises(PermissionDenied):
        impostor.get_notifications(uid)
    assert firebase.get_notifications(uid) == [] and impostor.user_id == "someone-else"


def test_an_unbound_proxy_takes_the_user_from_the_scoped_argument_as_the_original_call_sites_expect(client, uid):
    firebase = FireBaseManagement(client)  # the Reflex app's spelling, no user: FireBaseManagement()
    firebase.add_or_update_job_by_job_id(f"clients/{uid}/notifications", job("job-3"))
    assert firebase.get_unread_notifications(uid)[0]["job_id"] == "job-3"
    assert firebase.get_notifications(user_id=uid, read=False)[0]["job_id"] == "job-3"


def test_firebase_realtime_chat_proxy(client, uid):
    # space-1 is one of uid's companies (README, "Security", rule 5: chat acts on the acting user's spaces)
    get_firestore().document(f"clients/{uid}/bo_clients/c1/mandates/m1").set({"contact_space_id": "space-1"})
    chat = FirebaseRealtimeChat(client, user_id=uid)
    created = chat.create_chat(uid, "space-1", "Invoices", mode="chats")
    assert created["success"] is True and created["created"] is True
    threads = chat.get_all_threads("space-1", mode="chats")
    assert created["thread_key"] in threads
    assert chat.rename_chat("space-1", created["thread_key"], "Renamed", mode="chats") is True
    with pytest.raises(NotFound):
        chat.delete_chat("space-1", "no-such-thread", mode="chats")


def test_registry_proxy_sessions_and_ws_token(client, uid):
    registry = Registry(client, user_id=uid)
    session_id = f"s-{uuid.uuid4().hex[:8]}"
    registered = registry.register_user(uid, session_id, "route-a")
    assert registered["user_id"] == uid and registered["session_id"] == session_id
    assert registry.heartbeat(session_id)["session_id"] == session_id
    assert [s["session_id"] for s in registry.get_user_sessions(uid)] == [session_id]
    token = registry.issue_ws_token(uid)
    assert token["token"] and token["expires_in"] > 0
    assert registry.unregister_session(session_id) is True


def test_chroma_vector_service_forwards_any_listed_method(client, uid, collection_name):
    chroma = ChromaVectorService(client, user_id=uid)
    chroma.create_chroma_instance(collection_name)
    assert chroma.get_collection_info(collection_name) == {
        "success": True, "collection_name": collection_name, "document_count": 0,
    }


def test_only_listed_methods_are_reachable_and_private_names_never_leave_the_process(client):
    registry = Registry(client)
    assert hasattr(registry, "ping") and not hasattr(registry, "pong")
    with pytest.raises(UnknownMethod, match="did you mean ping"):
        registry.pign()
    with pytest.raises(AttributeError):
        registry._private  # noqa: B018 - attribute access is the point
    with pytest.raises(AttributeError):
        registry.__getstate_for_rpc__  # noqa: B018
    assert "ping" in dir(registry) and "issue_ws_token" in dir(registry)
    assert "Keep a live session" in (registry.heartbeat.__doc__ or "")  # the gateway's docstring


def test_proxies_without_a_client_use_the_configured_defaults(gateway_url, service_token, uid,
                                                              restore_client_defaults):
    gateway_client.configure(gateway_url, token=service_token)
    assert Registry().ping() == {"pong": True}
    gateway_client.configure(gateway_url, token="wrong-token")
    with pytest.raises(gateway_client.Unauthenticated):
        Registry().ping()


def test_async_proxies_await_the_same_calls(gateway_url, service_token, uid):
    async def scenario() -> None:
        async with AsyncRpcClient(gateway_url, service_token) as aclient:
            firebase = FirebaseManagement(aclient, user_id=uid)
            assert firebase.asynchronous
            await firebase.add_or_update_job_by_job_id(f"clients/{uid}/notifications", job("job-4"))
            assert (await firebase.check_job_status(uid, job_id="job-4"))["job_id"] == "job-4"
            assert (await Registry(aclient).ping()) == {"pong": True}
            unbound = FireBaseManagement(aclient)
            assert (await unbound.get_unread_notifications(uid))[0]["job_id"] == "job-4"
            with pytest.raises(UnknownMethod):
                await Registry(aclient).pign()
            with pytest.raises(PermissionDenied):
                await firebase.get_notifications("someone-else")

    asyncio.run(scenario())


def test_async_proxies_without_a_client_use_the_configured_defaults(gateway_url, service_token,
                                                                    restore_client_defaults):
    gateway_client.configure(gateway_url, token=service_token)

    async def scenario() -> dict:
        return await Registry(asynchronous=True).ping()

    assert asyncio.run(scenario()) == {"pong": True}
    assert asyncio.run(scenario()) == {"pong": True}  # a second loop gets its own connection pool
