"""FIREBASE_MANAGEMENT.* (Firestore) and FIREBASE_REALTIME.* (Realtime Database): what the catalogue promises.

Each method is a function of a domain module (``jobs``, ``banking``, ``task_manager``, ``journal``, ``accounts``,
``mandates``, ``context``, ``reference_data``, ``integrations``, ``chat``, ``direct_messages``), registered by the
``@FIREBASE_MANAGEMENT.method`` / ``@FIREBASE_REALTIME.method`` decorator beside it (the namespaces are declared once,
in ``namespaces.py``) under its original name, with its original argument names and order (the Reflex app calls them
positionally through a generic proxy). ``rpc.registry.autodiscover`` imports this module, which imports those modules:
that import is the registration. What changed for callers:

* Tenant scoping: every argument naming tenant data has a scope type (rpc/types.py; README "Security", rule 3):
  ``user_id`` must be the envelope's user, every path argument (``collection_path``, ``mandate_path``,
  ``document_path``…) must lie under ``clients/{envelope user_id}/``, a ``space_code`` must be one of the user's
  spaces, a direct message's recipient must share a company with the sender — else PERMISSION_DENIED. Ids
  (``job_id``, ``client_uuid``, ``contact_space_id``…) are only looked up in the caller's own tree.
* Server-owned data (rule 4): the job writers reach ``clients/{uid}/notifications`` and ``…/task_manager`` only, the
  status setters journal entries only; server fields (``sender_id``, ``firebase_user_id``, ``mandate_path``,
  ``user_id``, a fixed ``message_type``) are written after the caller's dicts; profile updates take
  ``accounts.PROFILE_FIELDS`` only; a beta request's ``authorized_access`` is staff's.
* Validation before the call: ids are single path segments (no ``/``, ``..``, control characters, bounded length),
  RTDB keys also refuse ``. $ # [ ]``, ``mode`` is ``chats``|``job_chats``, ``limit`` is 1..500, lists ≤ 500 items.
* Failures are typed errors: NOT_FOUND where the original returned None/False for a missing document or thread,
  INVALID_ARGS for bad input, UNAVAILABLE when Firestore/RTDB cannot be reached. Never ``ok: true`` with a None.
* Timestamps are stored as Firestore timestamps (server time) and returned as ISO-8601 UTC (``...Z``).
* Multi-document writes are one batch or transaction (chunks of 500 for bulk deletes, which are safe to retry).

Signature changes (a method only learns the caller from a ``user_id`` argument): ``freeze_job_list``,
``unfreeze_job_list``, ``check_and_create_client_document`` and ``add_timestamp_and_upload_to_firebase`` take
``user_id`` as a new second argument (the paths / the uid inside their payload must be the caller's; the last one
always failed without it); ``delete_scheduler_job_completely(job_id, user_id)`` likewise.
``get_unread_direct_messages`` gained a trailing ``limit``. ``create_or_get_working_doc_2`` returns the document's
path (the original returned a DocumentReference, which cannot cross RPC). Chat methods addressed by ``space_code`` alone
(rename/delete/erase_chat, get_all_threads, get_channel_messages) keep their original signatures: the space is
checked against the envelope's user.

Deliberately NOT exposed (the original exposed them; README, "Namespaces"):

* arbitrary-path Firestore access: add_document, add_new_document, add_document_without_timestamp, set_document,
  get_document, get_raw_document, update_firebase_doc, delete_doc_id, delete_document_recursive,
  delete_documents_by_full_paths, fetch_documents_from_firestore, delete_all_subcollections,
  delete_document_and_subcollections;
* FIREBASE_REALTIME.delete_space (deletes any RTDB root node, e.g. every user's direct messages);
* user_app_permission_token (returns Google OAuth refresh tokens and the client secret);
* get_all_users (dumps the users collection), check_if_users_exist (would return another user's uid and ``users``
  document by email; the original returned None anyway — check_if_usermail_already_exists answers yes/no),
  get_telegram_user_by_username / get_user_authorized_mandates /
  update_telegram_user_activity (cross-tenant Telegram bot operations);
* download_file_from_storage (writes to a server-local path chosen by the caller);
* every callback/listener method: watch_*, listen_direct_messages, listen_realtime_channel, watch_chat,
  stop_listener — the listeners worker publishes these changes as events instead;
* writes to global reference data (add_new_param, add_new_currency, upload_settings_params): admin-only data;
* the ``firestore_client`` property (a client object, not a method), the archived ``x_*`` variants,
  test_connection/test_strip, and billing/Stripe (``billing/rpc_methods.py``, in FIREBASE_MANAGEMENT too).

Firestore indexes (production; the emulator needs none): ``notifications`` (read ASC, timestamp DESC) for
get_unread_notifications, else it falls back to sorting one unordered page; collection-group scope for the
collection-group queries restricted to the caller's subtree: ``mandates`` (``__name__``, ``contact_space_name``,
``contact_space_id``), ``erp`` and ``context`` (``__name__``). ``core/tenancy.py`` uses the ``mandates`` ones (``__name__`` for a user's
spaces, ``contact_space_id`` to tell whether a Chroma collection name is some company's space).
"""
from __future__ import annotations

from . import (  # noqa: F401 - importing a domain module registers its methods
    accounts, banking, chat, context, direct_messages, integrations, jobs, journal, mandates, reference_data, task_manager,
)
