"""Adapters of the ports: embedded (SQLite, local folder) now, Azure ones beside them later."""
