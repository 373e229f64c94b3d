"""Names a stage package exports from the submodules that only its jobs need, imported on first
use.

Every Snakemake start parses the rule files, and so imports each stage package: the submitting
Snakemake, a dry run, and on SLURM every job's own Snakemake. Planning needs a stage's config
check, targets and paths; the code its jobs run (coding, scoring, tables, figures) is imported
when a job first asks for one of its names. ``from rdflow.stages.compress import frame_job``
and ``compress_stage.frame_job`` both work as before (PEP 562 module ``__getattr__``).

    __getattr__, __dir__ = lazy_exports(__name__, globals(), {".jobs": ("frame_job", ...)})

``tests/test_layout.py`` reads these tables as imports, so the import-cycle and layering checks
still see every edge.
"""

from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, namespace: dict,
                 table: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """A module ``__getattr__`` and ``__dir__`` for ``package`` (its ``globals()`` is
    ``namespace``); ``table`` maps a relative submodule (``".jobs"``) to the names it provides.
    A name is looked up once, then kept in the namespace."""
    where = {name: sub for sub, names in table.items() for name in names}

    def __getattr__(name: str):
        sub = where.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(sub, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
