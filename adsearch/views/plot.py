"""``adsearch plot``: reward over the search, best so far (full-budget results only) and
batch mean (every stored reward, a stopped child's rung value included), one PNG, one or
several searches (e.g. the controller against random search). Needs matplotlib
(``pip install adsearch[plot]``); no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adsearch.errors import ConfigError
from adsearch.views.status import trend


def plot_searches(searches: list[tuple[Any, Any]], output: Path) -> Path:
    """Draw every search of ``searches`` (``(store, search record)`` pairs, as
    :func:`~adsearch.daemon.launch.open_search` returns them; the caller closes the stores)
    on one figure and save it as PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plot needs matplotlib: pip install 'adsearch[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = 0
    for store, search in searches:
        # the search's own results: a re-check run (adsearch.daemon.recheck) is no draw of it
        rechecks = {t.id for t in store.trials(search.id, purposes=["recheck"])}
        results = [r for r in store.results(search.id)
                   if r.reward is not None and r.trial_id not in rechecks]
        rewards = [float(r.reward) for r in results]
        if not rewards:
            continue
        bs = int(search.config.get("batch_size") or 8)
        # best so far: full-budget results only (a stopped child's rung value is not one)
        full = [not (r.metrics or {}).get("truncated") and not (r.metrics or {}).get("bad_pattern")
                for r in results]
        tr = trend(rewards, bs, full)
        x = [min(len(rewards), (i + 1) * bs) for i in range(len(tr["batch_mean"]))]
        line, = ax.plot(x, tr["best_so_far"], label=f"{search.name}: best so far")
        ax.plot(x, tr["batch_mean"], linestyle="--", color=line.get_color(),
                label=f"{search.name}: batch mean")
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise ConfigError("no finished trials to plot yet")
    ax.set_xlabel("finished trials")
    ax.set_ylabel("reward")
    ax.set_title("AutoDropout search: reward over the search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
