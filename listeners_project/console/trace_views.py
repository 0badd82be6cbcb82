"""The trace page (``/admin/console/traces/<trace_id>/``): from an event's trace_id in the event viewer to the RPC
call or the listener that caused it. Thin: one selector, one template."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.response import TemplateResponse

from . import trace_selectors
from .views import require_console_permission

_MAX_TRACE_ID = 128  # the longest X-Trace-Id the gateway accepts (rpc/gateway.py)


def trace(request: HttpRequest, site: Any, trace_id: str) -> TemplateResponse:
    require_console_permission(request)
    trace_id = trace_id[:_MAX_TRACE_ID]
    context = {**site.each_context(request), "title": f"Trace {trace_id}", "trace_id": trace_id,
               "found": trace_selectors.trace_provenance(trace_id)}
    return TemplateResponse(request, "admin/console/trace.html", context)
