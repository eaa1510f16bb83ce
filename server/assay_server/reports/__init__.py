"""Collaborative reports: Yjs documents co-edited over the y-websocket protocol.

``document`` defines the schema, ``room`` the transport-agnostic room,
``rooms`` the per-instance registry. ``store`` (SQLAlchemy), ``relay``
(Redis pub/sub), ``socket`` (the Starlette websocket) and ``routes`` (HTTP)
are the adapters at the edges. ``docs/reports.md`` is the contract.
"""
