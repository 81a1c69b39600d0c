"""``python -m adsearch.daemon RUN_DIR``: the (detached) search daemon process."""

from __future__ import annotations

import sys

from adsearch.daemon.runner import main

sys.exit(main())
