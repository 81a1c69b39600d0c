"""Alembic migrations of the adsearch store, installed as ``adsearch.migrations``.

Run them with ``adsearch db upgrade --store URL`` (or :func:`adsearch.store.upgrade`).
Developers add a revision with ``alembic -c migrations/alembic.ini -x store=URL revision
--autogenerate -m "why"`` and then append its id to ``SCHEMA_REVISIONS`` in
``adsearch/store/models.py``.
"""
