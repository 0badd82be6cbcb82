"""Built-in reference data: the original's hard-coded defaults, shipped as fixtures/reference_defaults.json."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@lru_cache(maxsize=1)
def reference_defaults() -> dict[str, Any]:
    """dms_types, erp_types, chat_types, communication_types, currencies and the default function_table."""
    return json.loads((FIXTURES_DIR / "reference_defaults.json").read_text(encoding="utf-8"))
