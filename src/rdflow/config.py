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
    """Validate with the JSON schema (filling defaults), then :func:`check`. Returns config.

    An unknown key at any level is refused with the nearest valid key ("did you mean"), and a
    schema violation is reported in at most three lines naming the key.
    """
    import yaml
    from snakemake.utils import validate as sm_validate
    from snakemake.exceptions import WorkflowError

    schema_path = Path(schema or SCHEMA)
    with open(schema_path) as fh:
        tree = yaml.safe_load(fh)
    unknown_keys(config, tree)
    schema_errors(config, tree, schema_path.name)
    try:
        sm_validate(config, str(schema_path), set_default=True)
    except WorkflowError as exc:  # pragma: no cover - schema_errors reports first
        raise RdflowError(f"the config does not match {schema_path.name}: {str(exc)[:400]}") from None
    apply_kind_defaults(config)
    resolve_shipped_paths(config)
    check(config)
    return config


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def unknown_keys(value, schema: dict, path: tuple = ()) -> None:
    """Refuse keys the schema does not know, naming the closest known one."""
    import difflib

    if not isinstance(value, dict) or not isinstance(schema, dict):
        return
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties", True)
    for key, v in value.items():
        if key in props:
            unknown_keys(v, props[key], path + (key,))
        elif isinstance(extra, dict):
            unknown_keys(v, extra, path + (key,))
        elif extra is False:
            near = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
            hint = f"did you mean `{near[0]}`? " if near else ""
            where = f"under {_key(path)}" if path else "at the top level"
            raise RdflowError(
                f"config key {_key(path + (key,))} is not known {where}: {hint}"
                f"known keys: {', '.join(sorted(props))}")


def schema_errors(config: dict, schema: dict, name: str) -> None:
    """The most relevant schema violation, in at most three lines."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    err = jsonschema.exceptions.best_match(cls(schema).iter_errors(config))
    if err is None:
        return
    msg = err.message if len(err.message) < 300 else err.message[:300] + " …"
    desc = (err.schema or {}).get("description") if isinstance(err.schema, dict) else None
    hint = f"\n  {desc.strip()[:200]}" if desc else ""
    raise RdflowError(f"config key {_key(err.absolute_path)}: {msg}{hint}\n  (see workflow/schemas/{name})")


def apply_kind_defaults(config: dict) -> None:
    """Fill the defaults that belong to an entry's own kind (a codec class's ``defaults``,
    kodak's base URL), so the config shown in the report holds only keys the entry uses."""
    from .codecs import CODECS
    from .datasets import KODAK_BASE_URL

    for c in (config.get("codecs") or {}).values():
        cls = CODECS.get(c.get("kind"))
        for k, v in (cls.config_defaults(c) if cls else {}).items():
            c.setdefault(k, v)
    for d in (config.get("datasets") or {}).values():
        if d.get("kind") == "kodak":
            d.setdefault("base_url", KODAK_BASE_URL)
    for t in (config.get("train") or {}).values():
        if t.get("kodak"):
            t.setdefault("base_url", KODAK_BASE_URL)


def resolve_shipped_paths(config: dict) -> None:
    """Paths under workflow/ name shipped files: found beside the Snakefile (rdflow.paths)."""
    from .paths import shipped

    for d in (config.get("datasets") or {}).values():
        if d.get("path"):
            d["path"] = shipped(d["path"])
    for s in ((config.get("video") or {}).get("sequences") or {}).values():
        if s.get("path"):
            s["path"] = shipped(s["path"])
    ref = config.get("reference") or {}
    if ref.get("compressai_results") and "://" not in ref["compressai_results"]:
        ref["compressai_results"] = shipped(ref["compressai_results"])
    det = config.get("detection") or {}
    if isinstance(det.get("weights"), str) and det["weights"].startswith("workflow/"):
        det["weights"] = shipped(det["weights"])
    for t in (config.get("train") or {}).values():
        if t.get("images"):
            t["images"] = shipped(t["images"])


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
            if weights == "trained":
                lo, hi = _check_trained(config, name, c)
            elif "model" in c:
                raise RdflowError(f"{where}.model only applies to weights: trained (this codec has weights: {weights})")
        else:
            lo, hi = CODECS[kind].quality_range
            getattr(CODECS[kind], "check_config", lambda c, where: None)(c, where=where)
            for key in ("architecture", "checkpoint", "weights", "model", "metric"):
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
    from .train import check as check_train

    check_train(config)
    from .perceptual import check as check_vmaf; check_vmaf(config)  # noqa: E702
    from .analysis import check as check_bd_rate; check_bd_rate(config)  # noqa: E702
    from .machine_vision import check as check_detection; check_detection(config)  # noqa: E702
    from .video_codecs import check as check_video_codecs; check_video_codecs(config)  # noqa: E702
    from .complexity import check as check_complexity; check_complexity(config)  # noqa: E702
    from .download import check_urls; check_urls(config)  # noqa: E702


def _check_trained(config: dict, name: str, c: dict) -> tuple[int, int]:
    """weights: trained — the model exists (a train recipe or shipped files) for every quality,
    with the codec's architecture. Returns the range of qualities it has."""
    from .weights import trained_file

    where = f"codecs.{name}"
    recipe = (config.get("train") or {}).get(c.get("model"))
    if recipe is not None:
        if recipe["architecture"] != c["architecture"]:
            raise RdflowError(f"{where}.architecture is {c['architecture']} but train.{c['model']} "
                              f"trains {recipe['architecture']}: make them equal")
        missing = [q for q in c["qualities"] if q not in recipe["qualities"]]
        if missing:
            raise RdflowError(f"{where}.qualities: {missing} are not trained by train.{c['model']} "
                              f"(qualities {recipe['qualities']}); add them there or drop them here")
    for q in c["qualities"]:
        trained_file(config, c.get("model"), q, where=where)
    return min(c["qualities"]), max(c["qualities"])


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
