"""What script mode's two sides share: the environment variables and the file names of a
trial's directory. The script task (:mod:`adsearch.tasks.script`, in the daemon's child)
writes the spec and reads the files; the trial API (:mod:`adsearch.trial`, in the user's
script) reads the spec and writes the files. Standard library only (the ground floor)."""

from __future__ import annotations

ENV_TRIAL = "ADSEARCH_TRIAL"  # path of the trial spec file (set by the script task)
ENV_PATTERN = "ADSEARCH_PATTERN"  # standalone runs: a pattern file

#: file names inside the trial directory the script task hands out
CURVE_FILE = "curve.jsonl"  # one JSON object per report()
RESULT_FILE = "result.json"  # written by finish()
EXCEPTION_FILE = "exception.json"  # an uncaught exception of the script
SITES_FILE = "sites.json"  # each site's map, written by Trial.record_sites (attach calls it)

__all__ = ["CURVE_FILE", "ENV_PATTERN", "ENV_TRIAL", "EXCEPTION_FILE", "RESULT_FILE",
           "SITES_FILE"]
