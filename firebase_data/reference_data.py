"""Reference data, read-only over RPC: ``settings_param/*`` and ``blogs/*`` (§2.7).

Each list is the stored document's, or the built-in default (fixtures/reference_defaults.json) when the document is
absent. The original wrote those defaults while reading; here only ``manage.py seed_demo`` writes reference data,
and writing it over RPC (add_new_param, add_new_currency, upload_settings_params) is not exposed: it is global.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from google.cloud import firestore

from core.integrations.firebase import get_firestore
from core.errors import NotFound
from rpc.types import Identifier, MaxLen, Public

from .defaults import reference_defaults
from .namespaces import FIREBASE_MANAGEMENT
from .store import with_id
from .types import Limit, ShortText

ReferenceId = Annotated[str, Identifier(), Public("global reference data, the same for every tenant")]
CountryIds = Annotated[dict, MaxLen(1000), Public("the country list get_countries_list returned")]
ParamType = Literal["erp", "dms", "chat", "currencies", "communication"]
# param_type → (settings_param document, list field)
_PARAMS: dict[str, tuple[str, str]] = {
    "erp": ("erp_type", "erp_types"),
    "dms": ("dms_type", "dms_types"),
    "chat": ("chat_type", "chat_types"),
    "currencies": ("currencies", "currencies"),
    "communication": ("communication_type", "communication_types"),
}


def _param_list(param_type: str) -> list[dict[str, Any]]:
    document, field = _PARAMS[param_type]
    snapshot = get_firestore().collection("settings_param").document(document).get()
    stored = (snapshot.to_dict() or {}).get(field) if snapshot.exists else None
    return stored or list(reference_defaults()[field])


@FIREBASE_MANAGEMENT.method(writes=False)
def load_dms_types() -> list[dict[str, Any]]:
    """[{id, dms_displayname, dms_name}] from ``settings_param/dms_type``."""
    return _param_list("dms")


@FIREBASE_MANAGEMENT.method(writes=False)
def load_erp_types() -> list[dict[str, Any]]:
    """[{id, erp_displayname, erp_name}] from ``settings_param/erp_type``."""
    return _param_list("erp")


@FIREBASE_MANAGEMENT.method(writes=False)
def load_chat_types() -> list[dict[str, Any]]:
    """[{id, chat_displayname, chat_name}] from ``settings_param/chat_type``."""
    return _param_list("chat")


@FIREBASE_MANAGEMENT.method(writes=False)
def load_currencies() -> list[dict[str, Any]]:
    """[{id, currency_iso_code, region, name}] from ``settings_param/currencies``."""
    return _param_list("currencies")


@FIREBASE_MANAGEMENT.method(writes=False)
def get_all_currencies() -> list[dict[str, Any]]:
    """Same as load_currencies (kept as the original's second name)."""
    return _param_list("currencies")


@FIREBASE_MANAGEMENT.method(writes=False)
def load_param_data(param_type: ParamType) -> list[dict[str, Any]]:
    """The list of one parameter type (``communication`` included)."""
    return _param_list(param_type)


@FIREBASE_MANAGEMENT.method(writes=False)
def get_param_data(param_type: ParamType) -> list[dict[str, Any]]:
    """Same as load_param_data (kept as the original's second name)."""
    return _param_list(param_type)


@FIREBASE_MANAGEMENT.method(writes=False)
def download_all_languages() -> dict[str, dict[str, Any]]:
    """{language_id: document} of ``settings_param/languages/items``."""
    items = get_firestore().collection("settings_param/languages/items").stream()
    return {snapshot.id: snapshot.to_dict() or {} for snapshot in items}


@FIREBASE_MANAGEMENT.method(writes=False)
def get_countries_list() -> tuple[list[str], dict[str, int]]:
    """[sorted country names, {name: numeric id}] of ``settings_param/companies_legal_form/countries``."""
    names: dict[str, int] = {}
    for snapshot in get_firestore().collection("settings_param/companies_legal_form/countries").stream():
        data = snapshot.to_dict() or {}
        name = str(data.get("name", "")).strip()
        if name and str(data.get("id", "")).isdigit():
            names[name] = int(data["id"])
    return sorted(names), names


def _form_text(form: Any) -> str:
    if isinstance(form, str):
        return form.strip()
    name, description = str(form.get("name", "")).strip(), str(form.get("description", "")).strip()
    return f"{name} - {description}" if name and description else name or description


@FIREBASE_MANAGEMENT.method(writes=False)
def get_legal_forms_for_country(country_name: ShortText, country_id_map: CountryIds) -> list[str]:
    """Sorted "name - description" legal forms of a country (documents are keyed by country name)."""
    if country_name not in country_id_map or "/" in country_name or not country_name:
        return []
    snapshot = get_firestore().document(f"settings_param/companies_legal_form/countries/{country_name}").get()
    forms = (snapshot.to_dict() or {}).get("legal_forms", []) if snapshot.exists else []
    listed = forms.values() if isinstance(forms, dict) else forms
    return sorted(text for text in (_form_text(f) for f in listed if isinstance(f, (dict, str))) if text)


@FIREBASE_MANAGEMENT.method(writes=False)
def download_account_type_spec(erp: ReferenceId, country: ReferenceId, account_type: ShortText) -> tuple[bool, Any]:
    """[true, definition] from ``settings_param/coa_mapping_settings/erp/{erp}/{country}/account_type_definition``.
    NOT_FOUND when the ERP/country or the account type is unknown (was [false, message])."""
    snapshot = get_firestore().document(
        f"settings_param/coa_mapping_settings/erp/{erp}/{country}/account_type_definition").get()
    definitions = snapshot.to_dict() or {} if snapshot.exists else {}
    if account_type not in definitions:
        raise NotFound(f"no definition of {account_type!r} for {erp}/{country}")
    return True, definitions[account_type]


def _blog(snapshot: firestore.DocumentSnapshot) -> dict[str, Any]:
    post = with_id(snapshot, "slug")
    date = post.get("date")
    post["date"] = date.strftime("%B %d, %Y") if hasattr(date, "strftime") else "Date inconnue"
    return post


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_all_blogs(limit: Limit = 100) -> list[dict[str, Any]]:
    """Blog posts, newest first, each with ``slug`` and a display ``date`` ("January 02, 2025")."""
    query = get_firestore().collection("blogs").order_by("date", direction=firestore.Query.DESCENDING).limit(limit)
    return [_blog(snapshot) for snapshot in query.stream()]


@FIREBASE_MANAGEMENT.method(writes=False)
def fetch_blog_by_slug(slug: ReferenceId) -> dict[str, Any]:
    """One blog post. NOT_FOUND (was None)."""
    snapshot = get_firestore().collection("blogs").document(slug).get()
    if not snapshot.exists:
        raise NotFound(f"no blog post {slug!r}")
    return _blog(snapshot)
