"""The staff console's pages beyond Django's changelists: charts, RPC errors, workers, event viewer (README, "Staff
console"). Reads live in ``selectors.py``, rendering helpers beside it; the views are thin (``views.py``)."""
