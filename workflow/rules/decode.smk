# Stage: video sources (rdflow.stages.decode; logic in rdflow.sources). UVG archives are
# downloaded and extracted; every sequence is probed once (size, frame count, the frame
# selection checked) before its frames are coded. Frames are read at their offset and converted
# YUV 4:2:0 -> RGB inside the coding jobs (rdflow.sources.video.read_frame,
# rdflow.metrics.yuv.yuv420_to_rgb): no per-frame copy of the source is stored.
from rdflow import paths
from rdflow.stages import decode as decode_stage


rule download_sequence:
    output:
        paths.SEQUENCE_ARCHIVE,
    log:
        "logs/download/video/{sequence}.log",
    params:
        url=lambda wc: config["video"]["sequences"][wc.sequence]["url"],
        sha256=lambda wc: config["video"]["sequences"][wc.sequence]["sha256"],
    run:
        # params.url/sha256 also make a changed URL or pin download again
        decode_stage.download_job(config, wildcards.sequence, output[0], log[0])


rule extract_sequence:
    input:
        paths.SEQUENCE_ARCHIVE,
    output:
        paths.SEQUENCE_YUV,
    log:
        "logs/extract/video/{sequence}.log",
    resources:
        # ~3 GB of YUV per 1080p UVG clip out of its .7z
        mem_mb=2000,
        runtime=60,
    params:
        member=lambda wc: config["video"]["sequences"][wc.sequence]["member"],
    run:
        # member, width, height and frame count checked (rdflow.sources.sequences.extract)
        decode_stage.extract_job(config, wildcards.sequence, input[0], output[0], log[0])


rule probe_sequence:
    """A file's header and size read once (well under a second): on SLURM it runs in the
    submitting process, not as a job of its own that every coding job of the sequence waits for."""
    input:
        lambda wc: sequence_path(config, wc.sequence),
    output:
        paths.SEQUENCE_PROBE,
    log:
        "logs/probe_sequence/{sequence}.log",
    localrule: True
    run:
        decode_stage.probe_job(config, wildcards.sequence, input[0], output[0], log[0])
