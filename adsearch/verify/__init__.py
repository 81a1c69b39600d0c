"""``adsearch verify``: retrain a search's top-k patterns next to none and tuned baselines,
over paired seeds, on the test split (see docs/verify.md). Torch loads only when runs start."""

from __future__ import annotations

from adsearch.verify.plan import DROPBLOCK_SIZES, GRID_RATES, TUNE_SEED, baseline_kinds, grid
from adsearch.verify.run import VerifyRequest, VerifyRun, prepare
from adsearch.verify.stats import PairedDiff, Summary, paired_diff, summarize, t_quantile

__all__ = ["DROPBLOCK_SIZES", "GRID_RATES", "TUNE_SEED", "PairedDiff", "Summary", "VerifyRequest",
           "VerifyRun", "baseline_kinds", "grid", "paired_diff", "prepare", "summarize",
           "t_quantile"]
