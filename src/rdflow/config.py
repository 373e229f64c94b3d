"""Config checks beyond the JSON schema, and the study's item lists.

The schema (workflow/schemas/config.schema.yaml) checks types and fills defaults; this module
checks what a schema cannot say well: codec kinds that exist, architecture names and their
quality ranges, kind-specific required keys, dataset folders. Every error names the key, the
value and the allowed values. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from . import RdflowError
from .datasets import KODAK_SHA256, list_local_images

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validate(config: dict, schema: str | Path | None = None) -> dict:
    """Validate with the JSON schema (filling defaults), then :func:`check`. Returns config."""
    from snakemake.utils import validate as sm_validate
    from snakemake.exceptions import WorkflowError

    try:
        sm_validate(config, str(schema or SCHEMA), set_default=True)
    except WorkflowError as exc:
        raise RdflowError(f"config.yaml does not match {SCHEMA.name}: {exc}") from None
    check(config)
    return config


def check(config: dict) -> None:
    from .codecs import CODECS
    from .codecs.learned import ARCH_QUALITIES

    from .ablation import expand as expand_variants; expand_variants(config)  # noqa: E702
    datasets = config.get("datasets") or {}
    codecs = config.get("codecs") or {}
    if not codecs:
        raise RdflowError("config key codecs is empty: name at least one codec (see config.yaml)")
    for name, c in codecs.items():
        where = f"codecs.{name}"
        kind = c.get("kind")
        if kind not in CODECS:
            raise RdflowError(
                f"{where}.kind: unknown codec kind {kind!r}; known kinds: {', '.join(sorted(CODECS))}"
            )
        if kind == "learned":
            arch = c.get("architecture")
            if arch not in ARCH_QUALITIES:
                raise RdflowError(
                    f"{where}.architecture: unknown architecture {arch!r}; known: "
                    f"{', '.join(sorted(ARCH_QUALITIES))}"
                )
            lo, hi = ARCH_QUALITIES[arch]
            weights = c.get("weights", "pretrained")
            if weights == "checkpoint" and not c.get("checkpoint"):
                raise RdflowError(
                    f"{where}.checkpoint: weights is 'checkpoint' but no checkpoint path/URL is "
                    "given; set checkpoint: path/to/model-q{quality}.pth.tar"
                )
        else:
            lo, hi = CODECS[kind].quality_range
            getattr(CODECS[kind], "check_config", lambda c, where: None)(c, where=where)
            for key in ("architecture", "checkpoint"):
                if key in c:
                    raise RdflowError(f"{where}.{key} only applies to kind: learned (this codec is {kind})")
        bad = [q for q in c["qualities"] if not lo <= q <= hi]
        if bad:
            what = c.get("architecture", kind)
            raise RdflowError(
                f"{where}.qualities: {bad} out of range for {what}; allowed values are {lo}–{hi}"
            )
        for d in c.get("datasets", []) or []:
            if d not in datasets and d not in (config.get("sequences") or {}):
                raise RdflowError(f"{where}.datasets names {d!r}, which is not in datasets")
    from . import sequences

    sequences.check(config)
    for name, d in datasets.items():
        where = f"datasets.{name}"
        if d["kind"] == "local":
            if not d.get("path"):
                raise RdflowError(f"{where}.path: a local dataset needs the folder of its images")
        if d["kind"] == "kodak":
            unknown = [i for i in d.get("images", []) or [] if i not in KODAK_SHA256]
            if unknown:
                raise RdflowError(
                    f"{where}.images: {unknown} are not Kodak images (kodim01 … kodim24)"
                )
    from .perceptual import check as check_vmaf; check_vmaf(config)  # noqa: E702
    from .analysis import check as check_bd_rate; check_bd_rate(config)  # noqa: E702
    from .machine_vision import check as check_detection; check_detection(config)  # noqa: E702
    from .video_codecs import check as check_video_codecs; check_video_codecs(config)  # noqa: E702
    from .complexity import check as check_complexity; check_complexity(config)  # noqa: E702


def dataset_images(config: dict, name: str) -> dict[str, str | None]:
    """Image id -> source path for local datasets (None for downloaded ones, see rules)."""
    d = config["datasets"][name]
    if d["kind"] == "variant":  # the images of the dataset it preprocesses (rdflow.ablation)
        return dict.fromkeys(dataset_images(config, d["of"]))
    if d["kind"] == "kodak":
        ids = d.get("images") or sorted(KODAK_SHA256)
        return {i: None for i in ids}
    images = list_local_images(d["path"], key=f"datasets.{name}.path")
    subset = d.get("images")
    if subset:
        missing = [i for i in subset if i not in images]
        if missing:
            raise RdflowError(f"datasets.{name}.images: {missing} not found in {d['path']}")
        images = {i: images[i] for i in subset}
    return {k: str(v) for k, v in images.items()}


def codec_applies(config: dict, codec: str, dataset: str) -> bool:
    only = config["codecs"][codec].get("datasets")
    return not only or dataset in only or (config.get("datasets") or {}).get(dataset, {}).get("of") in only
