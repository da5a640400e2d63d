"""Durable state behind ``watcher.core.ports.Store``: the SQLite implementation and its schema.

Kept apart from the core so the core stays free of I/O, and so a shared PostgreSQL store can
sit next to ``sqlite`` later without the engine or the dispatcher noticing.
"""
