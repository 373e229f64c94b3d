"""The DAG's stages, one module each, in DAG order.

Every stage module declares the same small interface:

- ``SECTION``: its config section (``None`` for a stage every study runs);
- ``check(config) -> None``: refuse a bad section before any job starts (RdflowError naming
  the key and the fix);
- ``targets(config) -> list[str]``: the final files it adds to the study (tables, figures);
- ``downloads(config) -> list[str]``: files it fetches from the network (the ``download``
  target), may be absent;
- its job entry points, called by its rule file ``workflow/rules/<stage>.smk``.

Stages import the library (``codecs``, ``metrics``, ``detectors``, ``sources``, ``measure``,
``plots``, ``io``, ``paths``, ``config``); nothing below imports a stage, and :mod:`rdflow.study`
is the only module that imports them all.
"""

from . import (  # in DAG order below
    ablation,
    aggregate,
    bd_rate,
    complexity,
    compress,
    decode,
    detection,
    download,
    export,
    pairs,
    report,
    train,
    video_codecs,
    vmaf,
)

#: the stages in DAG order: the study validates and collects targets in this order
STAGES = (download, decode, train, compress, video_codecs, detection, vmaf, pairs, complexity,
          aggregate, export, bd_rate, ablation, report)
