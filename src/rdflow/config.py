"""The study config: its schema, defaults, shipped paths, and the item lists stages share.

The schema (workflow/schemas/config.schema.yaml) checks types and fills defaults; unknown keys
are refused with a "did you mean"; each codec entry gets its own kind's defaults. What a schema
cannot say well (kinds, architectures, quality ranges, folders) each stage checks itself:
:func:`rdflow.study.validate` runs this module's :func:`validate` and then every stage's
``check``. This module imports no stage. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

from . import RdflowError
from .sources.datasets import KODAK_SHA256, list_local_images

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validate(config: dict, schema: str | Path | None = None) -> dict:
    """Validate with the JSON schema (filling defaults, kind defaults, shipped paths). Returns
    config. The stages' own checks: :func:`rdflow.study.validate`.

    An unknown key at any level is refused with the nearest valid key ("did you mean"), and a
    schema violation is reported in at most three lines naming the key.
    """
    schema_path = Path(schema or SCHEMA)
    tree = load_schema(schema_path)
    unknown_keys(config, tree)
    schema_errors(config, tree, schema_path.name)
    fill_defaults(config, tree)
    apply_kind_defaults(config)
    resolve_shipped_paths(config)
    return config


def load_schema(path: str | Path = SCHEMA) -> dict:
    """The schema as a dict (parsed once per process and file version; LibYAML when present)."""
    import yaml

    p = Path(path)
    key = (str(p.resolve()), p.stat().st_mtime_ns)
    if key not in _SCHEMAS:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with open(p) as fh:
            _SCHEMAS[key] = yaml.load(fh, Loader=loader)
    return _SCHEMAS[key]


_SCHEMAS: dict = {}


def fill_defaults(config: dict, schema: dict) -> dict:
    """Validate ``config`` against ``schema`` and fill every ``default`` the schema gives (a copy
    of it, so entries never share a default list), as Snakemake's ``validate(set_default=True)``
    does."""
    import copy

    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    properties = base.VALIDATORS["properties"]

    def set_defaults(validator, props, instance, sub):
        if isinstance(instance, dict):
            for name, subschema in props.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from properties(validator, props, instance, sub)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    try:
        cls(schema).validate(config)
    except jsonschema.ValidationError as exc:  # schema_errors reports first; a default can still
        raise RdflowError(f"config key {_key(exc.absolute_path)}: {exc.message[:300]}") from None
    return config


def load_plugins(config: dict) -> list[str]:
    """Import the study's ``plugins`` (module names) so what they register can be named in the
    study; an unimportable one is refused naming the key and the import error."""
    import importlib
    import re

    names = config.get("plugins") or []
    if not isinstance(names, list):
        raise RdflowError("config key plugins: give a list of module names (e.g. [mypkg.codecs])")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise RdflowError(f"config key plugins[{i}]: {name!r} is not a module name (dotted "
                              "Python identifiers, e.g. mypkg.codecs; file paths are not accepted)")
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  any error while importing it is the user's to fix
            raise RdflowError(f"config key plugins[{i}]: cannot import {name!r}: {type(exc).__name__}: "
                              f"{exc}. Install it or add its folder to PYTHONPATH") from None
    return names


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
    from .sources.datasets import KODAK_BASE_URL

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


def dataset_images(config: dict, name: str) -> dict[str, str | None]:
    """Image id -> source path for local datasets (None for downloaded ones, see rules)."""
    d = config["datasets"][name]
    if d["kind"] == "variant":  # the images of the dataset it preprocesses (rdflow.stages.ablation)
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
