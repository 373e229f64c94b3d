"""Stage compress: code every (dataset | sequence, codec, quality, item) — the unit of results.

Each item gets its own files: the bitstream (``.bin``), its row (``.json``, one line of the
tidy CSV) and the 8-bit reconstruction (``.png``) for VMAF and detection. A *job* codes a
batch of up to ``batch_size`` items of one dataset or sequence with one (codec, quality) and
writes the batch's folders (:mod:`.items`): start-up (interpreter, torch, model, and on SLURM
the job's own Snakemake) is paid once per batch, not per item, Snakemake's own bookkeeping is
per batch folder, not per file, and a deleted or invalidated batch reruns alone. The batches
are fixed by the study alone (the items in sorted order, cut every ``batch_size``), so a
submitting and a remote Snakemake agree on them.
"""

from __future__ import annotations

from ... import RdflowError
from ...codecs import codec_class, codec_spec  # noqa: F401  (codec_spec: for callers)
from .items import (batch_folder, batch_folders, batch_size, batches, folders_of_study,  # noqa: F401
                    frame_batches, frame_jobs, image_batches, image_codecs, image_folders,
                    image_jobs, image_rows, item_files, missing_item, recon_archive,
                    recon_archives, sources_file, video_folders, video_rows)
from ...lazy import lazy_exports

#: what the jobs run, imported when a job first asks (parsing the rules plans only)
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".jobs": ("Coded", "code", "frame_batch_job", "frame_job", "image_batch_job", "image_job",
              "process_memory", "sources_job"),
})

SECTION = "codecs"
#: its targets are the batch folders (rdflow.study.all_targets(items=False) leaves them out)
ITEM_TARGETS = True


def item_inputs(config: dict, codec: str, quality: int, key: str, items: list, **fixed) -> list[str]:
    """Files a batch's codec reads per item besides the source (asked of the codec class)."""
    c = config["codecs"][codec]
    cls = codec_class(c["kind"])
    return [f for i in items for f in cls.item_inputs(config, codec, c, int(quality), {**fixed, key: i})]


def check(config: dict) -> None:
    """Every ``codecs.<name>`` entry: a known image-codec kind, the kind's own checks, qualities
    in range, datasets that exist."""
    from ... import metrics as M
    from ...codecs import CODECS

    unknown = [m for m in config.get("metrics") or [] if m not in M.coding_metrics()]
    if unknown:
        raise RdflowError(f"config key metrics: {unknown} are not metrics a coding job computes; "
                          f"known: {', '.join(M.coding_metrics())} (a plugin can register more)")
    codecs = config.get("codecs") or {}
    if not codecs and not config.get("pairs"):
        raise RdflowError("config key codecs is empty: name at least one codec (see config.yaml), "
                          "or only score existing pairs (pairs:)")
    names = set(config.get("datasets") or {}) | set((config.get("video") or {}).get("sequences") or {})
    for name, c in codecs.items():
        where = f"codecs.{name}"
        cls = codec_class(c.get("kind"), where=f"{where}.kind")
        if cls.medium != "image":
            images = sorted(k for k, v in CODECS.items() if v.medium == "image")
            raise RdflowError(f"{where}.kind: {c['kind']} codes whole sequences; put it under "
                              f"video_codecs, or use an image codec kind here: {', '.join(images)}")
        lo, hi = cls.check_entry(config, name, c, where=where) or cls.quality_range
        bad = [q for q in c["qualities"] if not lo <= q <= hi]
        if bad:
            raise RdflowError(f"{where}.qualities: {bad} out of range for "
                              f"{c.get('architecture', c['kind'])}; allowed values are {lo}–{hi}")
        for d in c.get("datasets", []) or []:
            if d not in names:
                raise RdflowError(f"{where}.datasets names {d!r}, which is not in datasets")


def targets(config: dict) -> list[str]:
    """Every batch folder: Snakemake does not rerun a job for a deleted input when the job's
    own outputs are there (the tables), so the folders themselves are targets and a deleted one
    is recoded (with the tables that use it)."""
    return folders_of_study(config)


def downloads(config: dict) -> list[str]:
    """The weights files the study's codecs fetch (asked of each codec class)."""
    out = []
    for name, c in sorted(config["codecs"].items()):
        out += codec_class(c["kind"]).downloads(config, name, c)
    return out
