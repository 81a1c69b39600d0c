"""Dropout sites in any PyTorch model: find them, attach ops there, detach again.

``find_sites(model, example_input)`` returns the site table (:class:`Site` rows) and
``space_for(sites)`` its search space; ``attach(model, regularizer, example_input)`` inserts
the regularizer's ops and returns an :class:`Attachment` (``.detach()``, a context manager).
See docs/sites.md. Imports torch: light commands must not import this package.
"""

from __future__ import annotations

from adsearch.sites.attach import Attachment, attach, attachment_of
from adsearch.sites.find import Site, SiteTable, find_sites, space_for

__all__ = ["Attachment", "Site", "SiteTable", "attach", "attachment_of", "find_sites", "space_for"]
