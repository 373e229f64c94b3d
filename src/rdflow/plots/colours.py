"""Codec colours shared by every figure of a run, and the study codec a published curve is of."""

from __future__ import annotations

import re
from typing import Iterable, Mapping

#: codec colours, in assignment order: tab10 without its grey, then tab20's light tones without
#: theirs, then tab20b's dark tones. Greys and black are kept for reference lines (uncompressed,
#: pooled fit, baseline). More names than colours: the list repeats.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
    "#9edae5",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)


def study_codecs(config: Mapping) -> list[str]:
    """Every codec name of a run, sorted: the image codecs (``codecs``) and the sequence codecs
    (``video_codecs``). Pass it as ``codecs=`` to the figure functions so that colours agree
    across all figures of the run."""
    names = set(config.get("codecs") or {}) | set(config.get("video_codecs") or {})
    return sorted(map(str, names))


def codec_colours(names: Iterable) -> dict[str, str]:
    """Codec name -> colour (hex): the i-th of the sorted unique names gets ``PALETTE[i]``."""
    ordered = sorted({str(n) for n in names})
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(ordered)}


def extra_colours(used: Iterable[str], n: int) -> list[str]:
    """``n`` colours not in ``used`` (palette order; the palette repeats when exhausted)."""
    used = {str(c).lower() for c in used}
    free = [c for c in PALETTE if c not in used] or list(PALETTE)
    return [free[i % len(free)] for i in range(n)]


def _norm(s) -> str:
    return str(s).strip().lower()


def _reference_keys(codec: str, stem: str | None) -> tuple[set[str], str | None]:
    """Names a reference curve may correspond to, and its training metric when the stem names one.
    ``compressai-bmshj2018-hyperprior_mse_cpu`` -> {"compressai-bmshj2018-hyperprior_mse_cpu",
    "bmshj2018-hyperprior"}, "mse"; ``jpeg`` -> {"jpeg"}; ``paper-elic2022_ms-ssim`` ->
    {..., "elic2022"}, "ms-ssim"."""
    keys = {_norm(codec)}
    metric = None
    if stem:
        keys.add(_norm(stem))
        base = re.sub(r"^(compressai|paper)-", "", _norm(stem))
        parts = base.split("_")
        keys.add(parts[0])
        if len(parts) > 1 and parts[1] in ("mse", "ms-ssim"):
            metric = parts[1]
    return keys, metric


def _kind_names_curves(kind) -> bool:
    """Whether published curves of a codec of ``kind`` carry the kind's name (``jpeg``): asked of
    the codec class (:attr:`rdflow.codecs.base.Codec.curves_named_by_kind`); an unregistered
    kind names its format."""
    from ..codecs import CODECS

    cls = CODECS.get(_norm(kind))
    return True if cls is None else bool(cls.curves_named_by_kind)


def _stem_prefix_match(stem: str, names: list[str]) -> str | None:
    """``bpg_444_x265_ycbcr`` <-> ``bpg444``: the name equals the stem's first tokens joined,
    the most tokens first."""
    tokens = re.split(r"[_\-.]+", re.sub(r"^(compressai|paper)-", "", _norm(stem)))
    prefixes = {"".join(tokens[:k]): k for k in range(1, len(tokens) + 1)}
    best = sorted((-prefixes[re.sub(r"[_\-.]+", "", _norm(n))], n) for n in names
                  if re.sub(r"[_\-.]+", "", _norm(n)) in prefixes)
    return best[0][1] if best else None


def reference_match(codec: str, stem: str | None, study: Mapping[str, Mapping]) -> str | None:
    """The study codec a published curve corresponds to, or None.

    ``study``: study codec name -> {"kind", "architecture", "metric"} (any may be missing). In
    order: a study codec of the same name (the curve's JSON name or file stem, case-insensitive);
    a learned codec whose architecture is the curve's (``compressai-<architecture>_<metric>_...``),
    one of the same training metric first; a classical codec whose kind is the curve's name
    (reference ``jpeg`` <-> a codec of kind ``jpeg``); a codec whose name, without separators,
    is the first tokens of the file stem (``bpg_444_x265_ycbcr`` <-> ``bpg444``, but
    ``jpeg2000`` is not ``jpeg``), the most tokens first. Ties: the first name in sorted order."""
    keys, metric = _reference_keys(codec, stem)
    names = sorted(map(str, study))
    for n in names:
        if _norm(n) in keys:
            return n
    arch = [n for n in names if study[n].get("architecture") is not None
            and _norm(study[n]["architecture"]) in keys]
    if arch:
        same = [n for n in arch if metric is not None and _norm(study[n].get("metric") or "") == metric]
        return (same or arch)[0]
    for n in names:
        kind = study[n].get("kind")
        if kind is not None and _norm(kind) in keys and _kind_names_curves(kind):
            return n
    return _stem_prefix_match(stem, names) if stem else None


def study_info(config: Mapping | None = None, summary=None, hue: str = "codec") -> dict[str, dict]:
    """Study codec name -> {"kind", "architecture", "metric"}, from the config's ``codecs`` and
    ``video_codecs`` sections and/or the ``kind``/``architecture`` columns of a summary."""
    info: dict[str, dict] = {}
    if config is not None:
        for section in ("codecs", "video_codecs"):
            for n, c in (config.get(section) or {}).items():
                c = c or {}
                info[str(n)] = {"kind": c.get("kind"), "architecture": c.get("architecture"),
                                "metric": c.get("metric")}
    if summary is not None and hue in summary:
        for n, g in summary.groupby(hue, sort=True):
            d = info.setdefault(str(n), {})
            for col in ("kind", "architecture"):
                if d.get(col) is None and col in g and g[col].notna().any():
                    d[col] = str(g[col].dropna().iloc[0])
    return info
