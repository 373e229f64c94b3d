"""The VMAF stage's settings, config check, jobs and targets (see :mod:`rdflow.stages.vmaf`)."""

from __future__ import annotations

from pathlib import Path

from rdflow import RdflowError, paths

SECTION = "vmaf"
#: Defaults of the ``vmaf:`` config section (the schema fills the same ones).
DEFAULTS = {"enabled": True, "model": "vmaf_v0.6.1neg", "keep_logs": True,
            "image_matrix": "bt709", "image_range": "limited", "image_chroma_loc": "left"}
#: Models selectable in config (libvmaf built-ins).
MODELS = ("vmaf_v0.6.1neg", "vmaf_v0.6.1")


# ----------------------------------------------------------------------------- config
def settings(config: dict) -> dict:
    """The ``vmaf:`` section with defaults filled in."""
    out = dict(DEFAULTS)
    out.update(config.get(SECTION) or {})
    return out


def _datasets(config: dict) -> list[str]:
    return sorted(config.get("datasets") or {})


def _sequences(config: dict) -> list[str]:
    from rdflow.sources.sequences import sequences

    return sorted(sequences(config))


def enabled(config: dict) -> bool:
    """Whether the stage runs: switched on and something (a sequence or a dataset) to score."""
    return bool(settings(config)["enabled"]) and bool(_datasets(config) or _sequences(config))


def check(config: dict) -> None:
    """Semantic checks at parse time: the model name, and an ffmpeg with libvmaf that loads it."""
    st = settings(config)
    if st["model"] not in MODELS:
        raise RdflowError(f"vmaf.model: unknown VMAF model {st['model']!r}; known models: "
                          f"{', '.join(MODELS)}")
    if not enabled(config):
        return
    from rdflow.metrics.vmaf import check_model, find_ffmpeg_with_libvmaf

    hint = " (or switch the VMAF stage off in config.yaml: vmaf: {enabled: false})"
    try:
        check_model(st["model"], find_ffmpeg_with_libvmaf())
    except RdflowError as e:
        raise RdflowError(f"{e}{hint}") from None


# ----------------------------------------------------------------------------- jobs, targets
def video_jobs(config: dict) -> list[tuple[str, str, int]]:
    """(sequence, codec, quality) of every ``vmaf_video`` job: per sequence, the image codecs
    that code its frames one by one (``video.codecs``), then the sequence codecs
    (``video_codecs``) that apply to it."""
    if not enabled(config):
        return []
    from rdflow.sources.sequences import video_codecs
    from rdflow.stages.video_codecs import points

    seq_points = points(config)
    return [j for s in _sequences(config)
            for j in [(s, c, int(q)) for c in video_codecs(config)
                      for q in config["codecs"][c]["qualities"]]
            + [p for p in seq_points if p[0] == s]]


def image_jobs(config: dict) -> list[tuple[str, str, int]]:
    """(dataset, codec, quality) of every ``vmaf_image`` job."""
    if not enabled(config):
        return []
    from rdflow.config import codec_applies

    return [(d, c, int(q)) for d in _datasets(config) for c in sorted(config["codecs"])
            if codec_applies(config, c, d) for q in config["codecs"][c]["qualities"]]


def video_csv(sequence: str, codec: str, quality) -> str:
    return paths.VMAF_VIDEO_CSV.format(sequence=sequence, codec=codec, quality=quality)


def image_csv(dataset: str, codec: str, quality) -> str:
    return paths.VMAF_IMAGE_CSV.format(dataset=dataset, codec=codec, quality=quality)


def video_recons(config: dict, sequence: str, codec: str, quality) -> list[str]:
    """The reconstructions a ``vmaf_video`` job reads: the per-frame PNGs of an image codec (in
    the batches' recon folders), or the one file of decoded frames of a sequence codec's
    compress_sequence job."""
    from rdflow.stages.compress import item_files
    from rdflow.stages.video_codecs import is_sequence_codec, recon_path

    if is_sequence_codec(config, codec):
        return [recon_path(sequence, codec, quality)]
    return item_files(config, "video", sequence, codec, quality, "png")


def video_recon_inputs(config: dict, sequence: str, codec: str, quality) -> list[str]:
    """What the ``vmaf_video`` rule lists as inputs, which keeps these ``temp()`` outputs until
    it ran: the batches' recon folders, or a sequence codec's file of decoded frames."""
    from rdflow.stages.compress import recon_archives
    from rdflow.stages.video_codecs import is_sequence_codec, recon_path

    if is_sequence_codec(config, codec):
        return [recon_path(sequence, codec, quality)]
    return recon_archives(config, "video", sequence, codec, quality)


def image_recons(config: dict, dataset: str, codec: str, quality, images) -> list[str]:
    """The reconstruction PNGs of ``images`` (in that order) that a ``vmaf_image`` job reads."""
    from rdflow.stages.compress import item_files

    files = item_files(config, "image", dataset, codec, quality, "png")
    by_name = {Path(f).stem: f for f in files}
    return [by_name[i] for i in images]


def image_recon_inputs(config: dict, dataset: str, codec: str, quality) -> list[str]:
    """The recon folders a ``vmaf_image`` rule lists as inputs."""
    from rdflow.stages.compress import recon_archives

    return recon_archives(config, "image", dataset, codec, quality)


def figure_paths(config: dict) -> list[str]:
    seqs = sorted({s for s, _, _ in video_jobs(config)})
    dsets = sorted({d for d, _, _ in image_jobs(config)})
    out = [f for s in seqs for f in paths.figure_files(paths.VMAF_BPP_FIGURE, domain="video",
                                                         name=s)]
    out += paths.figure_files(paths.VMAF_VS_PSNR_VIDEO_FIGURE) if seqs else []
    for d in dsets:
        out += paths.figure_files(paths.VMAF_BPP_FIGURE, domain="image", name=d)
    for d in dsets:
        out += paths.figure_files(paths.VMAF_VS_PSNR_IMAGE_FIGURE, dataset=d)
    return out


def targets(config: dict) -> list[str]:
    """Final targets of the stage ([] when it is off): the tables, the figures, and every
    per-job CSV (a deleted one is redone)."""
    vj, ij = video_jobs(config), image_jobs(config)
    if not (vj or ij):
        return []
    return ([paths.VMAF_TABLE, paths.VMAF_CORRELATION] + figure_paths(config)
            + [video_csv(*j) for j in vj] + [image_csv(*j) for j in ij])


def table_inputs(config: dict) -> dict[str, list[str]]:
    """Inputs of ``vmaf_table``: the per-job VMAF CSVs and the RD tables they are joined with."""
    vj, ij = video_jobs(config), image_jobs(config)
    return {"video": [video_csv(*j) for j in vj],
            "video_rd": sorted({paths.VIDEO_RD.format(sequence=s) for s, _, _ in vj}),
            "image": [image_csv(*j) for j in ij],
            "image_rd": sorted({paths.IMAGE_RD.format(dataset=d) for d, _, _ in ij})}
