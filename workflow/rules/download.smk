# Stage: download. Datasets and weights, verified and placed atomically (rdflow.download).
# Every rule that reads the network runs in the snakemake process itself, also under
# --profile profiles/slurm (compute nodes often have no internet; README, "Running on a
# cluster"); the fetching rules of other stages are listed here too. Unpacking (extract_sequence)
# is CPU/disk work: it is not part of `download` and runs as a cluster job.
localrules:
    download,
    download_kodak_image,
    download_zoo_weights,
    download_checkpoint,
    download_sequence,
    download_video_zoo_weights,
    download_detection_weights,


rule download:
    """Fetch everything the study needs from the network, and nothing else (for login nodes)."""
    input:
        study.download_targets(config),


rule download_kodak_image:
    output:
        "resources/datasets/{dataset}/{image}.png",
    log:
        "logs/download/{dataset}/{image}.log",
    params:
        url=lambda wc: url_join(config["datasets"][wc.dataset]["base_url"], f"{wc.image}.png"),
        sha256=image_sha256,
    run:
        from rdflow.download import fetch
        from rdflow.runtime import run_logged

        run_logged(log[0], fetch, params.url, output[0], sha256=params.sha256)


rule download_zoo_weights:
    output:
        "resources/weights/zoo/{architecture}/{metric}/q{quality}.pth.tar",
    log:
        "logs/download/weights/{architecture}_{metric}_q{quality}.log",
    run:
        from rdflow.runtime import run_logged
        from rdflow.weights import fetch_zoo

        run_logged(
            log[0],
            fetch_zoo,
            wildcards.architecture,
            wildcards.metric,
            int(wildcards.quality),
            output[0],
            config["weights"]["base_url"],
        )


rule download_checkpoint:
    output:
        "resources/weights/checkpoints/{codec}/q{quality}.pth.tar",
    log:
        "logs/download/checkpoints/{codec}_q{quality}.log",
    run:
        from rdflow.runtime import run_logged
        from rdflow.weights import fetch_checkpoint

        run_logged(
            log[0], fetch_checkpoint, config, wildcards.codec, int(wildcards.quality), output[0]
        )
