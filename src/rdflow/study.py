"""The study: a config validated by every stage, and the files it asks for.

This is the one module that imports the stages (rdflow.stages); the Snakefile asks it what to
build. A stage joins the study by being listed in :data:`rdflow.stages.STAGES`.
"""

from __future__ import annotations

from pathlib import Path

from . import config as study_config
from .stages import STAGES


def validate(config: dict, schema: str | Path | None = None) -> dict:
    """The study's plugins imported, the schema and its defaults (:func:`rdflow.config.validate`),
    then each stage's
    ``expand`` (a stage that adds entries, e.g. the ablation's variants) and ``check``, in DAG
    order. Returns config."""
    study_config.load_plugins(config)
    study_config.validate(config, schema)
    for stage in STAGES:
        if hasattr(stage, "expand"):
            stage.expand(config)
    for stage in STAGES:
        stage.check(config)
    return config


def all_targets(config: dict, items: bool = True) -> list[str]:
    """Every stage's final files (tables, figures and, unless ``items`` is false, the per-batch
    folders of stages that list them: ``ITEM_TARGETS``), in DAG order."""
    out: list[str] = []
    for stage in STAGES:
        if items or not getattr(stage, "ITEM_TARGETS", False):
            out += stage.targets(config)
    return out


def download_targets(config: dict) -> list[str]:
    """Every file the study fetches from the network (datasets, weights), nothing else."""
    out: list[str] = []
    for stage in STAGES:
        if hasattr(stage, "downloads"):
            out += stage.downloads(config)
    return sorted(set(out))
