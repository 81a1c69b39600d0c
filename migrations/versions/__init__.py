"""Revisions of the store schema, oldest first: 0001 initial, 0002 event log."""
