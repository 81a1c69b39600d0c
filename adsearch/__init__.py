"""adsearch: learn structured dropout patterns (AutoDropout, Pham & Le, AAAI 2021).

Package layout (dependencies point one way, top to bottom):

- ``adsearch.patterns``   search spaces and pattern records: pure data, no torch.
- ``adsearch.ops``        the torch masks: learned patterns and hand-designed baselines.
- ``adsearch.models``     target networks with dropout sites.
- ``adsearch.tasks``      data loaders and child training (``run_child``).
- ``adsearch.controller`` the RL controller and its checkpoints.
- ``adsearch.store``      SQLAlchemy store with Alembic migrations.
- ``adsearch.queue``      the file-locked trial queue.
- ``adsearch.daemon``     the search loop.
- ``adsearch.cli``        the Typer command line.
"""

from __future__ import annotations

from adsearch.errors import AdsearchError, PatternError

__version__ = "0.1.0"

__all__ = ["AdsearchError", "PatternError", "__version__"]
