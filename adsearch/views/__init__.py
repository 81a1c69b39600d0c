"""Presentation: what the command line shows of a search, beside the engine, not inside it.

- :mod:`adsearch.views.status`: ``adsearch status``'s JSON-able snapshot and its Rich
  rendering (no torch);
- :mod:`adsearch.views.plot`: ``adsearch plot``'s reward chart (matplotlib, the ``plot`` extra);
- :mod:`adsearch.views.live`: ``start --foreground``'s live display around the daemon;
- :mod:`adsearch.views.calibration_plot`: ``adsearch calibrate --plot``'s chart.
- :mod:`adsearch.views.learned_plot`: the learned reward per controller batch, as the
  controller saw it (benchmarks/proof4_report.py; matplotlib).
- :mod:`adsearch.views.mask_draw`: dropout masks drawn with numpy from the ops' geometry
  (``pattern show``, ``show``, the dashboard; no torch).

Layering: views import the engine (``adsearch.daemon``, the store, the queue); the engine never
imports views; the command line imports both. Importing this package is cheap (no torch).
"""

from __future__ import annotations
