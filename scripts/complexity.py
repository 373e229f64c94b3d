"""Snakemake ``script:`` entry point of rule complexity_codec (workflow/rules/complexity.smk).

A process of its own on purpose: the job's benchmark and its measurements (process RSS and CPU
time, torch threads) must see this job only, not the Snakemake process whose threads run the
coding jobs. Logic: rdflow.stages.complexity.codec_job.
"""

import logging
import sys
from pathlib import Path


def main(sm) -> None:
    sys.path.insert(0, str(Path(sm.scriptdir).resolve().parent / "src"))  # rdflow without install too
    from rdflow.runtime import job_log
    from rdflow.stages.complexity import codec_job

    # a complexity job runs for minutes: its measurements also go to the terminal as they
    # finish (rdflow.worker: what the measuring worker processes logged)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[complexity %(asctime)s] %(message)s", "%H:%M:%S"))
    for name in ("rdflow.complexity", "rdflow.measure", "rdflow.worker"):
        logging.getLogger(name).addHandler(console)

    weights = {k: v for k, v in sm.input.items() if k.startswith("q")}
    image = list(sm.input.image)
    with job_log(sm.log[0]):
        codec_job(config=dict(sm.config), codec=sm.wildcards.codec, out_csv=sm.output[0],
                  weights=weights, image_path=image[0] if image else None, threads=sm.threads)


main(snakemake)  # noqa: F821  (injected by Snakemake)
