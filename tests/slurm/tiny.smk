# A stand-in for the study with the shapes of the real workflow's rules
# (workflow/rules/compress.smk, detection.smk, vmaf.smk), so tests/test_slurm.py can check the
# SLURM requests, batching, failure reporting and resume through profiles/slurm on a real
# SLURM within a few minutes:
#   - batch coding rules, one per (sequence | dataset, codec, quality, batch), named like the
#     real ones (compress_frame__clip_c_q1_b<k>, compress_image__set_c_q1_b<k>), each with
#     literal per-item outputs and the real rules' own resources (gpu=1, mem_mb=8000,
#     runtime=60): one SLURM job codes (writes) every item of its batch;
#   - detect_decoded (gpu=1, mem_mb=8000, runtime=60) on the decoded frames;
#   - vmaf_video (threads 2, no GPU, mem_mb=4000, runtime=60);
#   - slow: only a runtime (from config; memory from the profile's default-resources), to
#     provoke a SLURM time-limit kill.
# Every output file says where it was written: SLURM job id, CUDA_VISIBLE_DEVICES, host, CPUs
# (and, for coded items, the items of the job's batch).
#
# config: frames (int, default 6): frames 0..frames-1 of sequence clip, codec c, quality 1
#         batch (int, default 3): items per coding job (the real workflow's batch_size)
#         slow_sleep (s, default 1), slow_runtime (min, default 5): the `slow` job
#         (slow_sleep > 60 * slow_runtime: killed by SLURM)
import os

FRAMES = int(config.get("frames", 6))
BATCH = int(config.get("batch", 3))
IMAGES = ["one", "two"]


onstart:
    # the study's own check (workflow/rules/common.smk): without the SLURM client commands,
    # snakemake-executor-plugin-slurm 2.6.1 does not fail, it hangs forever after
    # "No SLURM account given, trying to guess." (its submit thread dies on a missing sacct).
    import rdflow.cluster

    rdflow.cluster.check_executor(workflow)


def where():
    keys = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "HOSTNAME", "CPUS")
    env = dict(os.environ, CPUS=os.environ.get("SLURM_CPUS_PER_TASK", "-"))
    return " ".join(f"{k}={env.get(k, '-')}" for k in keys)


def batches(items):
    """Items cut every BATCH, as rdflow.stages.compress.batches does."""
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def frame_file(frame):
    return f"frames/clip/c/q1/{frame}.txt"


def image_file(image):
    return f"images/set/c/q1/{image}.txt"


def write_items(paths, items):
    for path in paths:
        with open(path, "w") as f:
            f.write(where() + f" ITEMS={','.join(map(str, items))}\n")


rule all:
    input:
        [frame_file(i) for i in range(FRAMES)],
        [image_file(i) for i in IMAGES],
        "detect.txt",
        "vmaf.txt",
        "slow.txt",


for _b, _frames in enumerate(batches(list(range(FRAMES)))):

    rule:
        name:
            f"compress_frame__clip_c_q1_b{_b}"
        output:
            [frame_file(i) for i in _frames],
        threads: 1
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        params:
            batch=_frames,
        run:
            write_items(output, params.batch)


for _b, _images in enumerate(batches(IMAGES)):

    rule:
        name:
            f"compress_image__set_c_q1_b{_b}"
        output:
            [image_file(i) for i in _images],
        threads: 1
        resources:
            gpu=1,
            mem_mb=8000,
            runtime=60,
        params:
            batch=_images,
        run:
            write_items(output, params.batch)


rule detect_decoded:
    input:
        [frame_file(i) for i in range(FRAMES)],
    output:
        "detect.txt",
    threads: 1
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=60,
    run:
        with open(output[0], "w") as f:
            f.write(where() + "\n")


rule vmaf_video:
    output:
        "vmaf.txt",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    run:
        with open(output[0], "w") as f:
            f.write(where() + "\n")


rule slow:
    output:
        "slow.txt",
    resources:
        runtime=int(config.get("slow_runtime", 5)),
    params:
        sleep=int(config.get("slow_sleep", 1)),
    shell:
        "sleep {params.sleep} && echo slept {params.sleep} > {output}"
