"""Deprecated name of :mod:`dissam.paper_tables` (the paper's benchmark protocol behind ``dissam
benchmark``), renamed so that it is not confused with the speed scripts in ``benchmarks/``. Importing
from here still works and warns."""

from __future__ import annotations

import warnings

from dissam import paper_tables

warnings.warn("dissam.benchmark is now dissam.paper_tables", DeprecationWarning, stacklevel=2)


def __getattr__(name: str):
    return getattr(paper_tables, name)
