# A stand-in for the study, with rule names and wildcards of the real workflow that
# profiles/slurm configures (compress_frame, compress_image with the wildcards its group names
# use; detect_decoded, vmaf_video) and the same GPU declarations (resources: gpu=1 where the
# real rule asks for a GPU), so tests/test_slurm.py can check the profile's grouping, GPU
# requests, failure reporting and resume on a real SLURM within a few minutes. Each job writes
# where it ran: SLURM job id, CUDA_VISIBLE_DEVICES, host.
#
# config: frames (int, default 6): compress_frame jobs (sequence clip, codec c, quality 1)
#         slow_sleep (s, default 1), slow_runtime (min, default 5): the `slow` job, used to
#         provoke a SLURM time-limit kill (slow_sleep > 60 * slow_runtime)
import os

FRAMES = int(config.get("frames", 6))


onstart:
    # the study's own check (workflow/rules/common.smk): without the SLURM client commands,
    # snakemake-executor-plugin-slurm 2.6.1 does not fail, it hangs forever after
    # "No SLURM account given, trying to guess." (its submit thread dies on a missing sacct).
    import rdflow.cluster

    rdflow.cluster.check_executor(workflow)


def where():
    return " ".join(f"{k}={os.environ.get(k, '-')}"
                    for k in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "HOSTNAME"))


rule all:
    input:
        expand("frames/clip/c/q1/{frame}.txt", frame=range(FRAMES)),
        "images/set/c/q1/one.txt",
        "detect.txt",
        "vmaf.txt",
        "slow.txt",


rule compress_frame:
    output:
        "frames/{sequence}/{codec}/q{quality}/{frame}.txt",
    resources:
        gpu=1,
    run:
        with open(output[0], "w") as f:
            f.write(where() + "\n")


rule compress_image:
    output:
        "images/{dataset}/{codec}/q{quality}/{image}.txt",
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
