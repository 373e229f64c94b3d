# Stage: perceptual quality. VMAF (libvmaf in imageio-ffmpeg's ffmpeg) on every coded frame and
# image, joined with the RD rows, and how PSNR and MS-SSIM track it (rdflow.stages.vmaf).
# The jobs list the temp() reconstructions as inputs, which keeps them until VMAF ran: the
# batches' recon folders of image codecs (each job reads its PNGs), or the decoded frames of a
# sequence codec's compress_sequence job.
# No benchmark: (in-thread jobs, see compress.smk); each job logs its own time.
from rdflow import paths
from rdflow.stages import download as download_stage
from rdflow.stages import vmaf as vmaf_stage


def vmaf_image_refs(wc):
    return [download_stage.image_input(config, wc.dataset, i) for i in IMAGES[wc.dataset]]


def vmaf_log_output(path):
    return {"vmaf_log": path} if vmaf_stage.settings(config)["keep_logs"] else {}


rule vmaf_video:
    input:
        yuv=lambda wc: sequence_path(config, wc.sequence),
        probe=paths.SEQUENCE_PROBE,
        recons=lambda wc: vmaf_stage.video_recon_inputs(config, wc.sequence, wc.codec, wc.quality),
    output:
        **vmaf_log_output(paths.VMAF_VIDEO_LOG),
        csv=paths.VMAF_VIDEO_CSV,
    log:
        "logs/vmaf_video/{sequence}/{codec}/q{quality}.log",
    wildcard_constraints:
        codec=_alternatives(CODECS + VIDEO_CODEC_NAMES),  # image and sequence codecs
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            vmaf_stage.score_video,
            config=config,
            sequence=wildcards.sequence,
            codec=wildcards.codec,
            quality=int(wildcards.quality),
            seq_path=input.yuv,
            recons=vmaf_stage.video_recons(
                config, wildcards.sequence, wildcards.codec, wildcards.quality
            ),
            out_csv=output.csv,
            out_log=output.get("vmaf_log"),
            threads=threads,
        )


rule vmaf_image:
    input:
        # the reconstructions' folders only: the originals (vmaf_image_refs) are inputs of the
        # coding jobs that made them, so a changed original reruns those and then this job
        recons=lambda wc: vmaf_stage.image_recon_inputs(config, wc.dataset, wc.codec, wc.quality),
    output:
        **vmaf_log_output(paths.VMAF_IMAGE_LOG),
        csv=paths.VMAF_IMAGE_CSV,
    log:
        "logs/vmaf_image/{dataset}/{codec}/q{quality}.log",
    threads: 4
    params:
        images=lambda wc: list(IMAGES[wc.dataset]),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            vmaf_stage.score_images,
            config=config,
            dataset=wildcards.dataset,
            codec=wildcards.codec,
            quality=int(wildcards.quality),
            images=params.images,
            refs=vmaf_image_refs(wildcards),
            recons=vmaf_stage.image_recons(
                config, wildcards.dataset, wildcards.codec, wildcards.quality, params.images
            ),
            out_csv=output.csv,
            out_log=output.get("vmaf_log"),
            threads=threads,
        )


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    vmaf_table,
    plot_vmaf_bpp,
    plot_vmaf_vs_psnr_video,
    plot_vmaf_vs_psnr_image,


rule vmaf_table:
    input:
        **vmaf_stage.table_inputs(config),
    output:
        table=report(paths.VMAF_TABLE, caption="../report/vmaf_table.rst", category="Perceptual"),
        corr=report(
            paths.VMAF_CORRELATION,
            caption="../report/vmaf_correlation.rst",
            category="Perceptual",
        ),
    log:
        "logs/vmaf_table.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0], vmaf_stage.write_tables, dict(input.items()), output.table, output.corr
        )


rule plot_vmaf_bpp:
    input:
        table=paths.VMAF_TABLE,
    output:
        png=report(
            f"{paths.VMAF_BPP_FIGURE}.png",
            caption="../report/vmaf_bpp.rst",
            category="Perceptual",
            subcategory="{name}",
        ),
        pdf=f"{paths.VMAF_BPP_FIGURE}.pdf",
    log:
        "logs/plot_vmaf_bpp/{domain}_{name}.log",
    wildcard_constraints:
        domain="video|image",
        name=_alternatives(DATASETS + SEQUENCES),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            vmaf_stage.plot_vmaf_bpp,
            input.table,
            wildcards.domain,
            wildcards.name,
            [output.png, output.pdf],
            codecs=study_codecs(config),
        )


rule plot_vmaf_vs_psnr_video:
    input:
        table=paths.VMAF_TABLE,
        corr=paths.VMAF_CORRELATION,
    output:
        png=report(
            f"{paths.VMAF_VS_PSNR_VIDEO_FIGURE}.png",
            caption="../report/vmaf_vs_psnr.rst",
            category="Perceptual",
        ),
        pdf=f"{paths.VMAF_VS_PSNR_VIDEO_FIGURE}.pdf",
    log:
        "logs/plot_vmaf_vs_psnr/video.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            vmaf_stage.plot_vmaf_vs_psnr,
            input.table,
            input.corr,
            "video",
            [output.png, output.pdf],
            codecs=study_codecs(config),
        )


rule plot_vmaf_vs_psnr_image:
    input:
        table=paths.VMAF_TABLE,
        corr=paths.VMAF_CORRELATION,
    output:
        png=report(
            f"{paths.VMAF_VS_PSNR_IMAGE_FIGURE}.png",
            caption="../report/vmaf_vs_psnr.rst",
            category="Perceptual",
            subcategory="{dataset}",
        ),
        pdf=f"{paths.VMAF_VS_PSNR_IMAGE_FIGURE}.pdf",
    log:
        "logs/plot_vmaf_vs_psnr/image_{dataset}.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            vmaf_stage.plot_vmaf_vs_psnr,
            input.table,
            input.corr,
            "image",
            [output.png, output.pdf],
            dataset=wildcards.dataset,
            codecs=study_codecs(config),
        )
