"""FIREBASE_MANAGEMENT.* (Firestore) and FIREBASE_REALTIME.* (Realtime Database): the method catalogue.

Each method is a plain function of a domain module, registered here under its original name, with its original
argument names and order (the Reflex app calls them positionally through a generic proxy). What changed for callers:

* Tenant scoping: ``user_id`` must be the envelope's user, and every path argument (``collection_path``,
  ``mandate_path``, ``document_path``…) must lie under ``clients/{envelope user_id}/`` — else PERMISSION_DENIED.
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
(rename/delete/erase_chat, get_all_threads, get_channel_messages) keep their original signatures and are validated
but not tenant-scoped: nothing in their arguments names a user.

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
  test_connection/test_strip, and billing/Stripe (a separate namespace module).

Firestore indexes (production; the emulator needs none): ``notifications`` (read ASC, timestamp DESC) for
get_unread_notifications, else it falls back to sorting one unordered page; collection-group scope for the
collection-group queries restricted to the caller's subtree: ``mandates`` (``__name__``, ``contact_space_name``,
``contact_space_id``), ``erp`` and ``context`` (``__name__``).
"""
from __future__ import annotations

from typing import Callable, Iterable

from rpc.registry import Namespace

from . import (
    accounts, banking, chat, context, direct_messages, integrations, jobs, journal, mandates, reference_data, task_manager,
)
from .namespaces import FIREBASE_MANAGEMENT as management, FIREBASE_REALTIME as realtime


def _register(namespace: Namespace, *, reads: Iterable[Callable] = (), writes: Iterable[Callable] = ()) -> None:
    for func in reads:
        namespace.method(writes=False)(func)
    for func in writes:
        namespace.method(writes=True)(func)


# --- jobs and notifications -----------------------------------------------------------------------------------------
_register(
    management,
    reads=[jobs.check_job_status, jobs.get_unread_notifications, jobs.get_notifications],
    writes=[
        jobs.add_or_update_job_by_job_id, jobs.add_or_update_job_by_file_id, jobs.add_or_update_job_by_batch_id,
        jobs.update_job_status, jobs.delete_notifications, jobs.mark_notifications_read, jobs.restart_job,
        jobs.delete_items_by_job_id, jobs.upload_token_usage,
    ],
)
# The Reflex app calls this name; it was already a synchronous alias in the original.
management.method(writes=True, name="async_delete_items_by_job_id")(jobs.delete_items_by_job_id)

# --- banking: banker batches, the mandate's pending-items working document ------------------------------------------
_register(
    management,
    reads=[banking.get_banker_batches, banking.download_pending_item_docsheet],
    writes=[banking.save_banker_batch, banking.create_or_get_working_doc_2, banking.delete_specific_pending_transactions],
)

# --- task manager: job document, invoice data and steps, internal messages, audit reports --------------------------
_register(
    management,
    reads=[
        task_manager.download_document_to_task_job_id, task_manager.download_invoice_step,
        task_manager.get_uri_drive_link_and_file_name, task_manager.get_batch_details,
        task_manager.get_internal_message, task_manager.download_auditor_review_on_step,
        task_manager.download_auditor_apbookeeper_chat_with_user, task_manager.transforme_audit_report_in_text,
    ],
    writes=[
        task_manager.upload_document_to_task_job_id, task_manager.upload_invoice_step,
        task_manager.upload_metadatas_to_job_id, task_manager.upload_aws_instance_id, task_manager.upload_chat_history,
        task_manager.add_message_to_internal_message, task_manager.upload_audit_report_posting_check,
        task_manager.upload_audit_report_is_invoice_check, task_manager.upload_audit_report_archive_check,
        task_manager.upload_audit_report_contact_check, task_manager.upload_audit_report_booking_check,
        task_manager.upload_audit_report_contact_creation_check, task_manager.upload_auditor_review_on_step,
        task_manager.upload_auditor_apbookeeper_chat_with_user,
    ],
)

# --- departments and journals --------------------------------------------------------------------------------------
_register(
    management,
    reads=[
        journal.get_open_job_id, journal.get_close_job_id, journal.fetch_journal_entries_by_mandat_id_and_job_ids,
        journal.fetch_journal_entries, journal.fetch_journal_entries_by_mandat_id_without_source,
        journal.fetch_journal_entries_by_mandat_id, journal.fetch_pending_journal_entries_by_mandat_id,
        journal.fetch_job_journals_by_mandat_id, journal.find_matching_department, journal.search_files_in_firebase,
    ],
    writes=[
        journal.upload_to_firebase, journal.add_timestamp_and_upload_to_firebase, journal.create_or_get_chat_threadkey,
        journal.update_status_to_pending, journal.update_document_process_status, journal.freeze_job_list,
        journal.unfreeze_job_list,
    ],
)

# --- users, clients, mandates, context ------------------------------------------------------------------------------
_register(
    management,
    reads=[
        accounts.check_if_usermail_already_exists, accounts.get_beta_request_by_email,
        accounts.get_invitations_by_inviter, accounts.get_client_data_by_name, accounts.check_business_name_existence,
        accounts.get_client_name_by_business_name, accounts.get_client_doc, accounts.get_customer_list,
        accounts.get_shared_customers_list,
        mandates.fetch_all_mandates, mandates.fetch_single_mandate, mandates.fetch_all_mandates_summary,
        mandates.get_erp_path, mandates.get_onboarding_temp_mandate,
        context.download_general_context_review, context.download_general_context_ai_summary,
        context.download_general_context_init, context.download_general_context_chat_with_user,
        context.download_accounting_context, context.download_accounting_context_init,
        context.get_last_refresh_accounting_context, context.reconstruct_full_client_profile,
        context.get_folder_ids_from_fetched_details,
    ],
    writes=[
        accounts.check_and_create_client_document, accounts.create_or_update_beta_request,
        mandates.set_firebase_function_table, mandates.delete_client_mandate, mandates.delete_client_if_no_mandates,
        context.upload_company_profile_report,
        context.upload_general_context_on_targets, context.upload_general_context_init,
        context.upload_general_context_init_topics_q_a, context.upload_general_context_init_chat_with_user,
        context.upload_coa_context, context.upload_accounting_context_init, context.save_context,
    ],
)
# Reads, but creates the default function table on first use as the original did (idempotent, so no key needed).
management.method(writes=False)(mandates.get_departments_list)

# --- reference data, Telegram users, scheduler jobs ------------------------------------------------------------------
_register(
    management,
    reads=[
        reference_data.load_dms_types, reference_data.load_erp_types, reference_data.load_chat_types,
        reference_data.load_currencies, reference_data.get_all_currencies, reference_data.load_param_data,
        reference_data.get_param_data, reference_data.download_all_languages, reference_data.get_countries_list,
        reference_data.get_legal_forms_for_country, reference_data.download_account_type_spec,
        reference_data.fetch_all_blogs, reference_data.fetch_blog_by_slug,
        integrations.get_telegram_users, integrations.is_telegram_user_authorized,
    ],
    writes=[
        integrations.create_telegram_user, integrations.delete_telegram_user, integrations.save_scheduler_job,
        integrations.disable_scheduler_job, integrations.delete_scheduler_job_completely,
    ],
)

# --- Realtime Database: chat threads and direct messages -----------------------------------------------------------
_register(
    realtime,
    reads=[chat.get_all_threads, chat.get_channel_messages, direct_messages.get_unread_direct_messages],
    writes=[
        chat.create_chat, chat.rename_chat, chat.delete_chat, chat.erase_chat, chat.send_realtime_message_structured,
        chat.send_speeddial_action, chat.send_tools_list, direct_messages.send_direct_message,
        direct_messages.delete_direct_message,
    ],
)
