"""Stage report: what the report shows besides the stages' tables and figures. The run's
environment (``results/environment.csv``, rule ``environment``): package versions, ffmpeg's
version, the device and the machine, recorded by the run and shown on the report's front page
(as the report labels of :func:`environment_labels`). Rules: workflow/rules/report.smk.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import paths

SECTION = None


def check(config: dict) -> None:
    """Nothing to check: the report has no config section."""


def targets(config: dict) -> list[str]:
    return [paths.ENV_CSV]


#: distributions whose versions are recorded (distribution name -> label)
PACKAGES = {"rdflow": "rdflow", "torch": "torch", "compressai": "compressai",
            "snakemake": "snakemake", "numpy": "numpy", "imageio-ffmpeg": "imageio-ffmpeg",
            "pillow": "pillow", "pandas": "pandas", "bjontegaard": "bjontegaard",
            "pytorch-msssim": "pytorch-msssim"}


def package_versions() -> dict[str, str]:
    """Installed versions (importlib.metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist, label in PACKAGES.items():
        try:
            out[label] = version(dist)
        except PackageNotFoundError:
            out[label] = "not installed"
    return out


def ffmpeg_version() -> str:
    """First line of ``ffmpeg -version`` of the ffmpeg bundled with imageio-ffmpeg."""
    import subprocess

    from ..proc import imageio_ffmpeg_exe

    try:
        exe = imageio_ffmpeg_exe()
        first = subprocess.run([exe, "-version"], capture_output=True, text=True,
                               timeout=60).stdout.splitlines()
        return first[0].strip() if first else "unknown"
    except Exception as exc:  # recorded, not fatal: the environment table is informative
        return f"unavailable ({type(exc).__name__}: {exc})"


def _git_commit(repo: Path) -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=20)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True, timeout=20)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(config: dict, repo: str | os.PathLike | None = None) -> dict[str, str]:
    """What ran the study: versions, ffmpeg, device, machine. Imports torch (for the device)."""
    import platform

    import psutil

    info = {"python": platform.python_version()}
    info.update(package_versions())
    info["ffmpeg"] = ffmpeg_version()
    info["rdflow_commit"] = _git_commit(Path(repo) if repo else paths.REPO)
    info["device_config"] = str(config.get("device", "auto"))
    try:
        import torch

        cuda = torch.cuda.is_available()
        info["device"] = "cuda" if cuda and config.get("device", "auto") != "cpu" else "cpu"
        info["gpu"] = torch.cuda.get_device_name(0) if cuda else "none"
        info["torch_cuda_build"] = str(torch.version.cuda) if torch.version.cuda else "none"
        info["torch_threads"] = str(torch.get_num_threads())
    except ImportError:
        info.update(device="cpu", gpu="unknown (torch not installed)")
    info["cpu"] = _cpu_model()
    info["cpu_count"] = str(os.cpu_count())
    info["memory_gb"] = f"{psutil.virtual_memory().total / 2**30:.1f}"
    info["platform"] = platform.platform()
    return info


def write_environment(config: dict, out_csv, repo=None) -> dict[str, str]:
    import pandas as pd

    from ..io import write_csv

    info = environment_info(config, repo)
    write_csv(out_csv, pd.DataFrame({"item": list(info), "value": list(info.values())}))
    return info


def read_environment(path: str | os.PathLike) -> dict[str, str]:
    """The item -> value pairs of an environment CSV (``{}`` when it does not exist yet)."""
    import csv

    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {r["item"]: r["value"] for r in csv.DictReader(fh)}


def environment_labels(path: str | os.PathLike) -> dict[str, str]:
    """The recorded environment as report labels (braces, which Snakemake would read as
    wildcards, become parentheses)."""
    env = read_environment(path)
    return {k: str(v).replace("{", "(").replace("}", ")") for k, v in env.items()}
