"""Snakemake ``script:`` entry point of the detect_original / detect_decoded rules.

Each job is its own process on purpose: importing ultralytics sets torch's thread count and
OMP_NUM_THREADS to 1 process-wide, which must not happen inside the Snakemake process whose
threads run the coding jobs. The detector is loaded once per job (all frames of one sequence or
dataset, original or one codec operating point). Logic: rdflow.machine_vision.detect_job.
"""

import sys
from pathlib import Path

sm = snakemake  # noqa: F821  (injected by Snakemake)
sys.path.insert(0, str(Path(sm.scriptdir).resolve().parent / "src"))  # rdflow without install too

from rdflow.machine_vision import detect_job  # noqa: E402
from rdflow.runtime import job_log  # noqa: E402

quality = getattr(sm.wildcards, "quality", None)
with job_log(sm.log[0]):
    detect_job(dict(sm.config), source=sm.wildcards.mvsource, name=sm.wildcards.mvname,
               out=sm.output[0], codec=getattr(sm.wildcards, "codec", None),
               quality=int(quality) if quality is not None else None, threads=sm.threads)
