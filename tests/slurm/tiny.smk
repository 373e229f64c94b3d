# A stand-in for the study, with rule names of the real workflow that profiles/slurm
# configures (compress_frame, compress_image, detect_decoded, vmaf_video) and the same GPU
# declarations (resources: gpu=1 where the real rule asks for a GPU), so tests/test_slurm.py
# can check the profile's grouping, GPU requests, failure reporting and resume on a real
# SLURM within a few minutes. Each job writes where it ran: SLURM job id,
# CUDA_VISIBLE_DEVICES, host.
#
# config: frames (int, default 6): compress_frame jobs
#         slow_sleep (s, default 1), slow_runtime (min, default 5): the `slow` job, used to
#         provoke a SLURM time-limit kill (slow_sleep > 60 * slow_runtime)
import os

FRAMES = int(config.get("frames", 6))


onstart:
    # The check proposed for the study's Snakefile: without the SLURM client commands,
    # snakemake-executor-plugin-slurm 2.6.1 does not fail, it hangs forever after
    # "No SLURM account given, trying to guess." (its submit thread dies on a missing sacct).
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        import shutil

        missing = [t for t in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(t) is None]
        if missing:
            raise WorkflowError(
                f"the slurm executor (--profile profiles/slurm) needs the SLURM commands "
                f"{', '.join(missing)}, which are not on PATH here: run snakemake on the "
                "cluster's login node (or load its slurm module), or run locally without "
                "--profile profiles/slurm"
            )


def where():
    return " ".join(f"{k}={os.environ.get(k, '-')}"
                    for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "HOSTNAME"))


rule all:
    input:
        expand("frames/{i}.txt", i=range(FRAMES)),
        "image.txt",
        "detect.txt",
        "vmaf.txt",
        "slow.txt",


rule compress_frame:
    output:
        "frames/{i}.txt",
    resources:
        gpu=1,
    run:
        with open(output[0], "w") as f:
            f.write(where() + "\n")


rule compress_image:
    output:
        "image.txt",
    resources:
        gpu=1,
    run:
        with open(output[0], "w") as f:
            f.write(where() + "\n")


use rule compress_image as detect_decoded with:
    output:
        "detect.txt",


rule vmaf_video:
    output:
        "vmaf.txt",
    threads: 2
    run:
        with open(output[0], "w") as f:
            f.write(where() + f" CPUS={os.environ.get('SLURM_CPUS_PER_TASK', '-')}\n")


rule slow:
    output:
        "slow.txt",
    params:
        sleep=int(config.get("slow_sleep", 1)),
    resources:
        runtime=int(config.get("slow_runtime", 5)),
    shell:
        "sleep {params.sleep} && echo slept {params.sleep} > {output}"
