"""Snakemake ``script:`` entry point of rule train_model (workflow/rules/train.smk).

A process of its own: training sets torch's threads, may create a CUDA context and holds the
optimiser's memory; none of that belongs in the Snakemake process. Logic: rdflow.training
(through rdflow.stages.train.train_job).
"""

import logging
import sys
from pathlib import Path


def main(sm) -> None:
    sys.path.insert(0, str(Path(sm.scriptdir).resolve().parent / "src"))  # rdflow without install too
    from rdflow.runtime import job_log
    from rdflow.stages.train import train_job

    # progress lines go to the job's log and to the terminal (a training job runs for minutes)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[train %(asctime)s] %(message)s", "%H:%M:%S"))
    logging.getLogger("rdflow.train").addHandler(console)
    with job_log(sm.log[0]):
        train_job(dict(sm.params.recipe), sm.wildcards.name, int(sm.wildcards.quality),
                  out_model=sm.output.model, out_info=sm.output.info,
                  init_model=sm.input.init[0] if sm.input.init else None,
                  device=sm.params.device, threads=sm.threads)


main(snakemake)  # noqa: F821  (injected by Snakemake)
