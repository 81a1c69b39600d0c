"""Rungs checked against the full budget (issue 19 §3).

- the rank maths (Spearman, Kendall with ties; stdlib only) is :mod:`adsearch.rank`, on the
  ground floor: the daemon's rung check uses it too;
- :mod:`adsearch.calibrate.analysis`: learning curves -> per-epoch agreement with the final
  value -> recommended rungs, and the calibration document (JSON); no torch;
- :mod:`adsearch.calibrate.runner`: ``adsearch calibrate``'s training runs (child processes,
  resumable work directory);
- :mod:`adsearch.calibrate.use`: ``start --rungs auto --calibration FILE``;
- :mod:`adsearch.views.calibration_plot`: the PNG (matplotlib, the ``plot`` extra; it is
  presentation, so it sits in :mod:`adsearch.views`).

This package imports nothing heavy at import time.
"""
