# Stage: compression. One job per (dataset, codec, quality, image): the unit of caching.
# run: jobs execute in threads of the Snakemake process (profiles/default: force-use-threads),
# so torch and CompressAI are imported once and each model is loaded once per run (README).
# No benchmark: here: for in-thread jobs Snakemake's benchmark samples the whole Snakemake
# process (reading all its memory maps), which cost ~0.2 s per job and measures nothing of the
# job; rows carry enc_s/dec_s and the process RSS/VRAM instead, and the complexity study
# measures each codec's memory in isolation.


rule compress_image:
    input:
        image=image_input,
        weights=weights_input,
    output:
        bitstream="results/image/{dataset}/{codec}/q{quality}/{image}.bin",
        row="results/image/{dataset}/{codec}/q{quality}/{image}.json",
        recon=reconstruction("results/image/{dataset}/{codec}/q{quality}/{image}.png"),
    log:
        "logs/compress_image/{dataset}/{codec}/q{quality}/{image}.log",
    threads: 1
    resources:
        gpu=gpu_for_codec,
    params:
        sha256=image_sha256,
    run:
        from rdflow.coding import image_job
        from rdflow.runtime import job_log

        with job_log(log[0]):
            image_job(
                config=config,
                dataset=wildcards.dataset,
                image=wildcards.image,
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                image_path=input.image,
                bitstream=output.bitstream,
                out_json=output.row,
                recon=output.recon,
                weights_path=input.weights[0] if input.weights else None,
                sha256=params.sha256,
                threads=threads,
            )


rule compress_frame:
    input:
        yuv=lambda wc: sequence_path(config, wc.sequence),
        probe="results/video/{sequence}/sequence.json",
        weights=weights_input,
    output:
        bitstream="results/video/{sequence}/{codec}/q{quality}/{frame}.bin",
        row="results/video/{sequence}/{codec}/q{quality}/{frame}.json",
        recon=reconstruction("results/video/{sequence}/{codec}/q{quality}/{frame}.png"),
    log:
        "logs/compress_frame/{sequence}/{codec}/q{quality}/{frame}.log",
    threads: 1
    resources:
        gpu=gpu_for_codec,
    run:
        from rdflow.coding import frame_job
        from rdflow.runtime import job_log

        with job_log(log[0]):
            frame_job(
                config=config,
                sequence=wildcards.sequence,
                frame=int(wildcards.frame),
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                seq_path=input.yuv,
                bitstream=output.bitstream,
                out_json=output.row,
                recon=output.recon,
                weights_path=input.weights[0] if input.weights else None,
                threads=threads,
            )
