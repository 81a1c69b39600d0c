"""The search daemon: samples patterns from the controller, runs children in slots, stores
results and updates the controller, crash-safely. See ``docs/daemon.md``.

Importing this package is cheap (no torch): ``status`` (:mod:`adsearch.views.status`) uses
:mod:`.rundir`; the loop imports the controller and tasks only when it starts.
"""

from __future__ import annotations

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.rundir import RunDir

__all__ = ["RunDir", "SearchConfig"]
