# Shared helpers: config validation, wildcard constraints, input functions, final targets.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # rdflow importable without install too

import rdflow.config
from rdflow import study
from rdflow.datasets import KODAK_SHA256
from rdflow.download import url_join
from rdflow.plots import study_codecs
from rdflow.sequences import sequence_path, sequences
from rdflow.weights import weights_file

try:
    rdflow.config.validate(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except rdflow.RdflowError as _exc:  # the message names the key and the fix: no traceback
    print(f"rdflow: {_exc}", file=sys.stderr)
    raise SystemExit(1)

DATASETS = sorted(config["datasets"])
CODECS = sorted(config["codecs"])
IMAGES = {d: rdflow.config.dataset_images(config, d) for d in DATASETS}
SEQUENCES = sorted(sequences(config))


def _alternatives(names):
    import re

    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    codec=_alternatives(CODECS),
    quality=r"\d+",
    image=r"[^/]+",
    sequence=_alternatives(SEQUENCES),
    frame=r"\d+",


def reconstruction(path):
    """Decoded reconstructions are temp() unless keep_reconstructions is set (see the schema)."""
    return path if config["keep_reconstructions"] else temp(path)


def all_targets():
    """Tables and figures, and every per-item result: a deleted item result is redone (with
    its aggregation) even when the tables that used it are still there."""
    rows = [r for d in DATASETS for r in study.image_rows(config, d)]
    rows += [r for s in SEQUENCES for r in study.video_rows(config, s)]
    return study.all_targets(config) + rows


def image_input(wc):
    """The file a coding job reads: the downloaded copy, or the local dataset's own file."""
    d = config["datasets"][wc.dataset]
    if d["kind"] == "kodak":
        return f"resources/datasets/{wc.dataset}/{wc.image}.png"
    if d["kind"] == "variant":  # made by rule preprocess_image (workflow/rules/report.smk)
        return f"resources/variants/{wc.dataset}/{wc.image}.png"
    return IMAGES[wc.dataset][wc.image]


def image_sha256(wc):
    d = config["datasets"][wc.dataset]
    return KODAK_SHA256[wc.image] if d["kind"] == "kodak" else None


def weights_input(wc):
    w = weights_file(config, wc.codec, wc.quality)
    return [w] if w else []


def gpu_for_codec(wc):
    """GPU rules declare resources: gpu=1 (learned codecs when a GPU may be used)."""
    c = config["codecs"][wc.codec]
    return int(c["kind"] == "learned" and config["device"] != "cpu")


onstart:
    # --profile profiles/slurm: fail before any submission where SLURM cannot work (the plugin
    # would wait forever instead): rdflow.cluster.check_executor; a no-op for other executors.
    import rdflow.cluster
    from rdflow.runtime import remove_stale_parts

    rdflow.cluster.check_executor(workflow)
    if not workflow.dryrun:
        remove_stale_parts()  # a killed run's unfinished atomic writes (hidden .part files)
