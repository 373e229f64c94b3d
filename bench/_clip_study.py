"""Shared command line of the benchmarks that time a small video study on a shared clip."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))
CLIP = SHARED / "data" / "video" / "cars_320x240.i420"


def clip_study_parser(doc: str) -> argparse.ArgumentParser:
    """--clip, --cores, --frames, --repeats, --archs, --qualities (the issue's default study:
    cars_320x240, 30 frames x 2 architectures x 2 qualities, random weights, 2 cores)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--archs", nargs="+", default=["bmshj2018-hyperprior", "mbt2018-mean"])
    ap.add_argument("--qualities", nargs="+", type=int, default=[1, 4])
    return ap
