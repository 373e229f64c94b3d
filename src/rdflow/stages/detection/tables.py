"""The stage's table: every evaluation row, in ``results/machine_vision.csv``."""

from __future__ import annotations

from ... import RdflowError

LEADING = ["source", "sequence", "dataset", "codec", "quality", "gt", "bpp", "map50", "map50_95",
           "detections_per_frame", "mean_confidence", "uncompressed_map50",
           "uncompressed_map50_95", "uncompressed_detections_per_frame", "n_frames", "n_gt",
           "n_pred"]


def gather(paths: list[str]):
    """All evaluation rows as one DataFrame, leading columns first, sorted."""
    import pandas as pd

    from ...io import read_json

    rows = [r for p in paths for r in read_json(p)]
    if not rows:
        raise RdflowError("no machine-vision rows to gather")
    df = pd.DataFrame(rows)
    for col in ("sequence", "dataset"):
        if col not in df:
            df[col] = None
    df = df.sort_values(["source", "sequence", "dataset", "gt", "codec", "quality"],
                        kind="stable", na_position="first").reset_index(drop=True)
    lead = [c for c in LEADING if c in df.columns]
    return df[lead + sorted(c for c in df.columns if c not in lead)]


def table(paths: list[str], csv_path: str):
    """Write the evaluation rows ``paths`` as the CSV ``csv_path``; returns the DataFrame."""
    from ...io import write_csv

    df = gather(paths)
    write_csv(csv_path, df)
    return df
