"""adsearch: learn structured dropout patterns (AutoDropout, Pham & Le, AAAI 2021).

Package layout, bottom to top (each imports only from layers below it; the full table is
``docs/architecture.md``, "Layers", checked by ``tests/test_layers.py``):

- ``adsearch.errors``; standard-library helpers: ``reward``, ``rungs`` (the rung rule),
  ``rank``, ``atomic``, ``command``, ``strict``, ``trial_files``.
- ``adsearch.patterns``   search spaces and pattern records: pure data, no torch.
- ``adsearch.ops``, ``adsearch.controller``, ``adsearch.store``: the torch masks, the
  controllers, the SQLAlchemy store with Alembic migrations.
- ``adsearch.models``, ``adsearch.queue``: target networks with dropout sites; the queue.
- ``adsearch.tasks``, ``adsearch.sites``: data and child training; a user model's sites.
- ``adsearch.daemon``, ``adsearch.trial``: the search loop; script mode's trial API.
- ``adsearch.verify``, ``adsearch.calibrate``: planned searches and calibration runs.
- ``adsearch.views``, ``adsearch.dashboard``: presentation.
- ``adsearch.cli``        the Typer command line.
"""

from __future__ import annotations

from adsearch.errors import AdsearchError, PatternError

__version__ = "0.1.0"

__all__ = ["AdsearchError", "PatternError", "__version__"]
