"""Where things are: the workflow's own shipped files, and the folders runs write into.

Paths in a study file are relative to the working directory (where ``snakemake`` runs). Paths
that start with ``workflow/`` name files shipped with the workflow (``workflow/resources/``:
the quickstart's images, clip, detector, model and reference curves); when the working
directory is not the repository (``snakemake -d elsewhere``) they are found beside the
Snakefile instead.
"""

from __future__ import annotations

from pathlib import Path

#: the repository: Snakefile, config.yaml, workflow/, src/
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflow" / "resources"
MODELS = SHIPPED / "models"
TRAINED = "resources/trained"
TRAIN_IMAGES = "resources/train"


def shipped(path: str) -> str:
    """``path`` itself, or the shipped file it names when it starts with ``workflow/`` and the
    working directory has no such file."""
    p = Path(path)
    if not p.is_absolute() and p.parts[:1] == ("workflow",) and not p.exists():
        return str(REPO / p)
    return path


def shipped_model(name: str, quality: int | str) -> Path:
    return MODELS / name / f"q{quality}.pth.tar"
