# Stage: video sources and YUV decoding. UVG archives are downloaded and extracted; every sequence
# is probed once (size, frame count, the frame selection checked) before its frames are coded.
# Frames are read at their offset and converted YUV 4:2:0 -> RGB inside the coding jobs
# (rdflow.video.read_frame, rdflow.yuv.yuv420_to_rgb): no per-frame copy of the source is stored.


rule download_sequence:
    output:
        "resources/video/{sequence}.7z",
    log:
        "logs/download/video/{sequence}.log",
    params:
        url=lambda wc: config["video"]["sequences"][wc.sequence]["url"],
        sha256=lambda wc: config["video"]["sequences"][wc.sequence]["sha256"],
    run:
        from rdflow.runtime import job_log
        from rdflow.sequences import download

        with job_log(log[0]):  # params.url/sha256 also make a changed URL or pin download again
            download(config, wildcards.sequence, output[0])


rule extract_sequence:
    input:
        "resources/video/{sequence}.7z",
    output:
        "resources/video/{sequence}.yuv",
    log:
        "logs/extract/video/{sequence}.log",
    params:
        member=lambda wc: config["video"]["sequences"][wc.sequence]["member"],
    run:
        from rdflow.runtime import job_log
        from rdflow.sequences import extract

        with job_log(
            log[0]
        ):  # member, width, height and frame count checked (rdflow.sequences)
            extract(config, wildcards.sequence, input[0], output[0])


rule probe_sequence:
    input:
        lambda wc: sequence_path(config, wc.sequence),
    output:
        "results/video/{sequence}/sequence.json",
    log:
        "logs/probe_sequence/{sequence}.log",
    run:
        from rdflow.runtime import job_log
        from rdflow.sequences import write_probe

        with job_log(log[0]):
            write_probe(config, wildcards.sequence, input[0], output[0])
