# Shared helpers: the study validated by every stage (rdflow.study), wildcard constraints,
# input functions the rule files share, final targets.
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # rdflow importable without install too

import rdflow
import rdflow.engine
from rdflow import study
from rdflow.codecs import codec_class, weights_file
from rdflow.download import url_join
from rdflow.plots import study_codecs
from rdflow.config import dataset_images
from rdflow.runtime import run_logged
from rdflow.sources.datasets import KODAK_SHA256
from rdflow.sources.sequences import sequence_path, sequences, video_codecs
from rdflow.stages import aggregate as aggregate_stage
from rdflow.stages import download as download_stage

# one pending scheduler timer, not one more per finished job (rdflow.engine, snakemake#3744)
rdflow.engine.coalesce_reevaluation()

try:
    study.validate(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except rdflow.RdflowError as _exc:  # the message names the key and the fix: no traceback
    print(f"rdflow: {_exc}", file=sys.stderr)
    raise SystemExit(1)

DATASETS = sorted(config["datasets"])
CODECS = sorted(config["codecs"])
IMAGES = {d: dataset_images(config, d) for d in DATASETS}
SEQUENCES = sorted(sequences(config))
VIDEO_IMAGE_CODECS = sorted(video_codecs(config))


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


_TAGS = {}


def rule_tag(name):
    """A rule-name-safe tag of a dataset or sequence name, unique within the study."""
    tag = re.sub(r"\W", "_", name)
    while _TAGS.setdefault(tag, name) != name:
        tag += "_"
    return tag


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
    return study.all_targets(config)


def image_input(wc):
    """The file a job reads for ``wc.image`` of ``wc.dataset`` (rdflow.stages.download)."""
    return download_stage.image_input(config, wc.dataset, wc.image)


def image_sha256(wc):
    return download_stage.image_sha256(config, wc.dataset, wc.image)


def weights_input(wc):
    w = weights_file(config, wc.codec, wc.quality)
    return [w] if w else []


def gpu_for_codec(wc):
    """GPU jobs declare resources: gpu=1 (the codec class says whether it runs on one)."""
    c = config["codecs"][wc.codec]
    return int(codec_class(c["kind"]).uses_gpu(c, config["device"]))


onstart:
    # --profile profiles/slurm: fail before any submission where SLURM cannot work (the plugin
    # would wait forever instead): rdflow.cluster.check_executor; a no-op for other executors.
    import rdflow.cluster
    from rdflow.runtime import remove_stale_parts, serialise_torch_import

    rdflow.cluster.check_executor(workflow)
    if not workflow.dryrun:
        remove_stale_parts()  # a killed run's unfinished atomic writes (hidden .part files)
        serialise_torch_import()  # job threads: scipy never sees a half-imported torch
