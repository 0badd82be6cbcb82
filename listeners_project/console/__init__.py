"""The staff console's pages beyond Django's changelists: charts, RPC errors, workers, event viewer, one page per user
and the uid / session id search, and the trace page (README, "Staff console"). Reads live in ``selectors.py``,
``users.py`` and ``trace_selectors.py``, the user page's actions in ``services.py``, rendering helpers beside them; the
views are thin (``views.py``, ``trace_views.py``)."""
