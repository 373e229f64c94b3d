"""Where things are: the workflow's own shipped files, and the folders runs write into.

Paths in a study file are relative to the working directory (where ``snakemake`` runs). Paths
that start with ``workflow/`` name files shipped with the workflow (``workflow/resources/``:
the quickstart's images, clip, detector, model and reference curves); when the working
directory is not the repository (``snakemake -d elsewhere``) they are found beside the
Snakefile instead.
"""

from __future__ import annotations

from pathlib import Path

#: the repository: Snakefile, config.yaml, workflow/, src/
REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflow" / "resources"
MODELS = SHIPPED / "models"
TRAINED = "resources/trained"
TRAIN_IMAGES = "resources/train"


def shipped(path: str) -> str:
    """``path`` itself, or the shipped file it names when it starts with ``workflow/`` and the
    working directory has no such file."""
    p = Path(path)
    if not p.is_absolute() and p.parts[:1] == ("workflow",) and not p.exists():
        return str(REPO / p)
    return path


def shipped_model(name: str, quality: int | str) -> Path:
    return MODELS / name / f"q{quality}.pth.tar"


# -- results/ and resources/ paths, spelled once ------------------------------------------------
# Patterns are format strings whose fields are the rules' wildcards ({dataset}, {codec},
# {quality}, {image}, {sequence}, {frame}, ...): rules use them as they are (Snakemake fills the
# wildcards) and stages fill them with str.format. One section per stage, in DAG order.

# -- download (stages/download.py)
KODAK_IMAGE = "resources/datasets/{dataset}/{image}.png"
ZOO_WEIGHTS = "resources/weights/zoo/{architecture}/{metric}/q{quality}.pth.tar"
CHECKPOINT = "resources/weights/checkpoints/{codec}/q{quality}.pth.tar"
#: an ablation variant's preprocessed image (rules preprocess_image__<variant>_b<k>, per batch)
VARIANT_IMAGE = "resources/variants/{dataset}/{image}.png"
# (end download)

# -- decode (stages/decode.py)
#: a downloaded sequence: the archive (rule download_sequence; its SHA-256 is recorded beside it
#: unless pinned) and the raw .yuv extracted from it (rule extract_sequence)
SEQUENCE_ARCHIVE = "resources/video/{sequence}.7z"
SEQUENCE_YUV = "resources/video/{sequence}.yuv"
#: what probing a sequence's file found, the frame selection checked against it
SEQUENCE_PROBE = "results/video/{sequence}/sequence.json"
# (end decode)

# -- compress (stages/compress.py)
#: one batch job (up to batch_size items of one dataset or sequence, one codec and quality; the
#: k-th batch of the items in sorted order) writes one folder: per item ``<item>.bin`` (its
#: bitstream) and ``<item>.json`` (its row, one line of the tidy CSV); and, when VMAF or detection
#: reads them (or keep_reconstructions), one archive ``<batch>.recon.zip`` of 8-bit
#: reconstructions ``<item>.png`` (temp() unless keep_reconstructions; one file, so Snakemake's
#: deletion of it is atomic). The folder is written under ``<folder>.partial`` and the archive
#: under a temporary name; both are renamed when the whole batch is coded.
IMAGE_BATCH = "results/image/{dataset}/{codec}/q{quality}/batch{batch}"
FRAME_BATCH = "results/video/{sequence}/{codec}/q{quality}/batch{batch}"
RECON_SUFFIX = ".recon.zip"
#: the source images of one image batch (rule image_batch_sources: their paths, sizes and
#: SHA-256), the one input every coding job of that batch waits for
IMAGE_BATCH_SOURCES = "results/image/{dataset}/sources/batch{batch}.json"
#: one batch job's log (the batch codes items of one dataset or sequence with one codec/quality)
IMAGE_BATCH_LOG = "logs/compress_image/{dataset}/{codec}/q{quality}/b{batch}.log"
FRAME_BATCH_LOG = "logs/compress_frame/{sequence}/{codec}/q{quality}/b{batch}.log"
# (end compress)

# -- video_codecs (stages/video_codecs.py)
#: one (sequence, sequence codec, quality): the whole bitstream file and its per-frame rows
SEQUENCE_BITSTREAM = "results/video/{sequence}/{codec}/q{quality}/sequence.bin"
SEQUENCE_ROWS = "results/video/{sequence}/{codec}/q{quality}/sequence_rows.json"
#: its decoded frames, for VMAF and detection (temp() unless keep_reconstructions): raw frames in
#: the codec's domain, the selected frames in order (I420 planes, or packed RGB24 for RGB codecs)
SEQUENCE_RECON = "results/video/{sequence}/{codec}/q{quality}/sequence_recon.raw"
#: pretrained weights of a learned sequence codec (ssf2020), rule download_video_zoo_weights
ZOO_VIDEO_WEIGHTS = "resources/weights/zoo-video/{architecture}/{metric}/q{quality}.pth.tar"
# (end video_codecs)

# -- detection (stages/detection.py)
#: where bare detector weights names (yolov8n.pt) are looked up, and downloaded to with
#: detection.offline: false; ultralytics' settings folder (kept inside the study)
DETECTOR_WEIGHTS = "resources/weights"
ULTRALYTICS_DIR = "resources/ultralytics"
#: the stage's table (one row per unit, codec, quality and ground truth)
DETECTION_CSV = "results/machine_vision.csv"
#: one unit ({mvsource}: video | image, {mvname}: the sequence or dataset): detections on its
#: uncompressed frames, on the decoded frames of one (codec, quality), and their evaluation
DETECTION_DIR = "results/detection/{mvsource}/{mvname}"
DETECTIONS_ORIGINAL = DETECTION_DIR + "/original.json"
DETECTIONS_DECODED = DETECTION_DIR + "/{codec}/q{quality}.json"
DETECTION_EVALUATION = DETECTION_DIR + "/{codec}/q{quality}_eval.json"
#: figure stems (``.png`` and ``.pdf`` each) of a unit: {figure} map | proxy
DETECTION_FIGURE = "results/figures/machine_vision_{mvsource}_{mvname}_{figure}"
# (end detection)

# -- vmaf (stages/vmaf.py)
#: the stage's tables: one row per scored frame/image, and VMAF vs PSNR / MS-SSIM fits
VMAF_TABLE = "results/vmaf.csv"
VMAF_CORRELATION = "results/vmaf_correlation.csv"
#: one (sequence | dataset, codec, quality) job: its per-frame/-image CSV and libvmaf's JSON log
VMAF_VIDEO_DIR = "results/vmaf/video/{sequence}"
VMAF_VIDEO_CSV = VMAF_VIDEO_DIR + "/{codec}/q{quality}.csv"
VMAF_VIDEO_LOG = VMAF_VIDEO_DIR + "/{codec}/q{quality}.vmaf.json"
VMAF_IMAGE_CSV = "results/vmaf/image/{dataset}/{codec}/q{quality}.csv"
VMAF_IMAGE_LOG = "results/vmaf/image/{dataset}/{codec}/q{quality}.vmaf.json"
#: figure stems (``.png`` and ``.pdf`` each): VMAF-rate curves of a sequence (domain video) or
#: dataset (domain image), and the VMAF-vs-PSNR scatters
VMAF_BPP_FIGURE = "results/figures/vmaf_bpp_{domain}_{name}"
VMAF_VS_PSNR_VIDEO_FIGURE = "results/figures/vmaf_vs_psnr_video"
VMAF_VS_PSNR_IMAGE_FIGURE = "results/figures/vmaf_vs_psnr_image_{dataset}"
# (end vmaf)

# -- pairs (stages/pairs/)
#: given (reference, distorted) pairs scored without coding: one pair's per-frame rows, the
#: pooled table (one row per pair) and a sequence pair's per-frame figure
PAIR_CSV = "results/pairs/{pair}.csv"
PAIRS_TABLE = "results/pairs.csv"
PAIR_FIGURE = "results/figures/pairs_{pair}.png"
# (end pairs)

# -- complexity (stages/complexity.py)
COMPLEXITY_CSV = "results/complexity.csv"  # the gathered table
COMPLEXITY_CODEC_CSV = "results/complexity/{codec}.csv"  # one codec's job
#: figure stems (each figure is <stem>.png and <stem>.pdf, beside its <stem>.json)
COMPLEXITY_BPP_TIME_FIGURE = "results/figures/complexity_bpp_time"
COMPLEXITY_RESOLUTION_FIGURE = "results/figures/complexity_resolution"
BENCHMARKS_DIR = "benchmarks"  # Snakemake's benchmark: files, benchmarks/<rule>/...tsv
BENCHMARKS_CSV = "results/benchmarks.csv"
# (end complexity)

# -- aggregate, bd_rate, ablation, train, report (stages/aggregate.py ... stages/report.py)
#: figures: a pattern names the stem; each figure is ``<stem>.png`` and ``<stem>.pdf``, and its
#: data sidecar ``<stem>.json`` (rdflow.plots.save)
FIGURES = "results/figures"
FIGURE_SUFFIXES = (".png", ".pdf")
#: tidy per-item rows and per-(codec, quality) summaries of an image dataset / a video sequence
IMAGE_RD = "results/image_rd_{dataset}.csv"
IMAGE_RD_SUMMARY = "results/image_rd_{dataset}_summary.csv"
VIDEO_RD = "results/video_rd_{sequence}.csv"
VIDEO_RD_SUMMARY = "results/video_rd_{sequence}_summary.csv"
IMAGE_RD_FIGURE = FIGURES + "/image_rd_{dataset}_{metric}"
VIDEO_RD_FIGURE = FIGURES + "/video_rd_{sequence}_{metric}"
#: CompressAI's published curves, downloaded once when reference.compressai_results is a URL
REFERENCE_CACHE = "resources/reference"
#: the study's BD-rate table, and its readable page
BD_CSV = "results/bd_rate.csv"
BD_HTML = "results/bd_rate.html"
#: preprocessing ablation: the table and figures of a base dataset (its variants' images:
#: VARIANT_IMAGE)
ABLATION_CSV = "results/ablation_{dataset}.csv"
ABLATION_FIGURE = FIGURES + "/ablation_{dataset}_{metric}"
#: train: a recipe's downloaded Kodak images, its model, info (recipe + loss curve) and resume
#: state per quality, and the training table and figure of a model the study codes with
TRAIN_IMAGE = TRAIN_IMAGES + "/{name}/{image}.png"
TRAINED_MODEL = TRAINED + "/{name}/q{quality}.pth.tar"
TRAINED_INFO = TRAINED + "/{name}/q{quality}.json"
TRAINED_STATE = TRAINED + "/{name}/q{quality}.state.pt"
TRAIN_CSV = "results/train_{model}.csv"
TRAIN_FIGURE = FIGURES + "/train_{model}"
#: what ran the study (versions, device, machine): the report's front page
ENV_CSV = "results/environment.csv"


def figure_files(stem: str, **fields) -> list[str]:
    """The image files of a figure pattern (``IMAGE_RD_FIGURE``, ...) with ``fields`` filled."""
    return [stem.format(**fields) + s for s in FIGURE_SUFFIXES]
# (end aggregate)

# -- export (stages/export.py) and the rdflow-eval command (rdflow/evaluate.py)
#: one (image dataset, codec) in CompressAI's results format (``python -m compressai.utils.plot``)
COMPRESSAI_JSON = "results/compressai/{dataset}/{codec}.json"
#: rdflow-eval's folder for ``--name``: its study.yaml, and the run's working directory
EVAL_DIR = "results/eval/{name}"
# (end export)
