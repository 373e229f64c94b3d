"""The study's targets: which output files a config asks for (used by the Snakefile)."""

from __future__ import annotations

from .config import codec_applies, dataset_images


def image_rows(config: dict, dataset: str) -> list[str]:
    images = dataset_images(config, dataset)
    out = []
    for codec, c in sorted(config["codecs"].items()):
        if not codec_applies(config, codec, dataset):
            continue
        for q in c["qualities"]:
            for image in images:
                out.append(f"results/image/{dataset}/{codec}/q{q}/{image}.json")
    return out


def image_targets(config: dict) -> list[str]:
    out = []
    for dataset in sorted(config.get("datasets") or {}):
        out += [f"results/image_rd_{dataset}.csv", f"results/image_rd_{dataset}_summary.csv"]
        for y in ("psnr_rgb", "ms_ssim_db"):
            if y == "ms_ssim_db" and "ms_ssim" not in config.get("metrics", []):
                continue
            out += [f"results/figures/image_rd_{dataset}_{y}.{ext}" for ext in ("png", "pdf")]
    return out


def video_rows(config: dict, sequence: str) -> list[str]:
    from .sequences import frames, video_codecs

    fr = frames(config, sequence)
    return [f"results/video/{sequence}/{codec}/q{q}/{f}.json"
            for codec in video_codecs(config) for q in config["codecs"][codec]["qualities"] for f in fr]


def video_targets(config: dict) -> list[str]:
    from .sequences import sequences

    out = []
    for seq in sorted(sequences(config)):
        out += [f"results/video_rd_{seq}.csv", f"results/video_rd_{seq}_summary.csv"]
        metrics = ["psnr_rgb", "psnr_y"] + (["ms_ssim_db"] if "ms_ssim" in config.get("metrics", []) else [])
        out += [f"results/figures/video_rd_{seq}_{m}.{ext}" for m in metrics for ext in ("png", "pdf")]
    return out


def download_targets(config: dict) -> list[str]:
    """Every file the study fetches from the network (datasets, weights), nothing else."""
    from .weights import is_url, weights_file

    out = []
    for dataset, d in sorted((config.get("datasets") or {}).items()):
        if d["kind"] == "kodak":
            out += [f"resources/datasets/{dataset}/{i}.png" for i in dataset_images(config, dataset)]
    for codec, c in sorted(config["codecs"].items()):
        if c["kind"] != "learned" or c.get("weights", "pretrained") == "random":
            continue
        if c.get("weights", "pretrained") == "checkpoint" and not is_url(c["checkpoint"]):
            continue
        out += [weights_file(config, codec, q) for q in c["qualities"]]
    from .sequences import sequences

    for name, s in sorted(sequences(config).items()):
        if s["source"] == "uvg":
            out.append(f"resources/video/{name}.7z")
    from .machine_vision import download_targets as detection_downloads; out += detection_downloads(config)  # noqa: E702
    from .video_codecs import download_targets as video_codec_downloads; out += video_codec_downloads(config)  # noqa: E702
    return sorted(set(out))


#: Final targets of the study, one function per stage: ``f(config) -> list[str]``. A stage
#: (VMAF, detection, complexity, BD-rate, ...) adds its function here with one line.
TARGET_FUNCTIONS = [image_targets, video_targets]


def all_targets(config: dict) -> list[str]:
    out = []
    for f in TARGET_FUNCTIONS:
        out += f(config)
    return out
from .perceptual import vmaf_targets; TARGET_FUNCTIONS.append(vmaf_targets)  # noqa: E402,E702
from .analysis import analysis_targets; TARGET_FUNCTIONS.append(analysis_targets)  # noqa: E402,E702
from .ablation import ablation_targets; TARGET_FUNCTIONS.append(ablation_targets)  # noqa: E402,E702
from .machine_vision import machine_vision_targets; TARGET_FUNCTIONS.append(machine_vision_targets)  # noqa: E402,E702
from .video_codecs import video_codec_targets; TARGET_FUNCTIONS.append(video_codec_targets)  # noqa: E402,E702
from .complexity import complexity_targets; TARGET_FUNCTIONS.append(complexity_targets)  # noqa: E402,E702
from .train_report import train_targets; TARGET_FUNCTIONS.append(train_targets)  # noqa: E402,E702
