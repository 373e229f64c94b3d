# Stage: perceptual quality. VMAF (libvmaf in imageio-ffmpeg's ffmpeg) on every coded frame and
# image, joined with the RD rows, and how PSNR and MS-SSIM track it (rdflow.perceptual).
# The jobs list the temp() reconstruction PNGs as inputs, which keeps them until VMAF ran.
# No benchmark: (in-thread jobs, see compress.smk); each job logs its own time.
from types import SimpleNamespace

from rdflow import perceptual


def vmaf_image_refs(wc):
    return [image_input(SimpleNamespace(dataset=wc.dataset, image=i)) for i in IMAGES[wc.dataset]]


def vmaf_log_output(path):
    return {"vmaf_log": path} if perceptual.settings(config)["keep_logs"] else {}


rule vmaf_video:
    input:
        yuv=lambda wc: sequence_path(config, wc.sequence),
        probe="results/video/{sequence}/sequence.json",
        recons=lambda wc: perceptual.video_recons(config, wc.sequence, wc.codec, wc.quality),
    output:
        **vmaf_log_output("results/vmaf/video/{sequence}/{codec}/q{quality}.vmaf.json"),
        csv="results/vmaf/video/{sequence}/{codec}/q{quality}.csv",
    log:
        "logs/vmaf_video/{sequence}/{codec}/q{quality}.log",
    threads: 4
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.score_video(
                config=config,
                sequence=wildcards.sequence,
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                seq_path=input.yuv,
                recons=input.recons,
                out_csv=output.csv,
                out_log=output.get("vmaf_log"),
                threads=threads,
            )


rule vmaf_image:
    input:
        refs=vmaf_image_refs,
        recons=lambda wc: perceptual.image_recons(
            wc.dataset, wc.codec, wc.quality, IMAGES[wc.dataset]
        ),
    output:
        **vmaf_log_output("results/vmaf/image/{dataset}/{codec}/q{quality}.vmaf.json"),
        csv="results/vmaf/image/{dataset}/{codec}/q{quality}.csv",
    log:
        "logs/vmaf_image/{dataset}/{codec}/q{quality}.log",
    threads: 4
    params:
        images=lambda wc: list(IMAGES[wc.dataset]),
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.score_images(
                config=config,
                dataset=wildcards.dataset,
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                images=params.images,
                refs=input.refs,
                recons=input.recons,
                out_csv=output.csv,
                out_log=output.get("vmaf_log"),
                threads=threads,
            )


rule vmaf_table:
    input:
        **perceptual.table_inputs(config),
    output:
        table=report("results/vmaf.csv", caption="../report/vmaf_table.rst", category="Perceptual"),
        corr=report(
            "results/vmaf_correlation.csv",
            caption="../report/vmaf_correlation.rst",
            category="Perceptual",
        ),
    log:
        "logs/vmaf_table.log",
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.write_tables(dict(input.items()), output.table, output.corr)


rule plot_vmaf_bpp:
    input:
        table="results/vmaf.csv",
    output:
        png=report(
            "results/figures/vmaf_bpp_{domain}_{name}.png",
            caption="../report/vmaf_bpp.rst",
            category="Perceptual",
            subcategory="{name}",
        ),
        pdf="results/figures/vmaf_bpp_{domain}_{name}.pdf",
    log:
        "logs/plot_vmaf_bpp/{domain}_{name}.log",
    wildcard_constraints:
        domain="video|image",
        name=_alternatives(DATASETS + SEQUENCES),
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.plot_vmaf_bpp(
                input.table,
                wildcards.domain,
                wildcards.name,
                [output.png, output.pdf],
                codecs=study_codecs(config),
            )


rule plot_vmaf_vs_psnr_video:
    input:
        table="results/vmaf.csv",
        corr="results/vmaf_correlation.csv",
    output:
        png=report(
            "results/figures/vmaf_vs_psnr_video.png",
            caption="../report/vmaf_vs_psnr.rst",
            category="Perceptual",
        ),
        pdf="results/figures/vmaf_vs_psnr_video.pdf",
    log:
        "logs/plot_vmaf_vs_psnr/video.log",
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.plot_vmaf_vs_psnr(
                input.table,
                input.corr,
                "video",
                [output.png, output.pdf],
                codecs=study_codecs(config),
            )


rule plot_vmaf_vs_psnr_image:
    input:
        table="results/vmaf.csv",
        corr="results/vmaf_correlation.csv",
    output:
        png=report(
            "results/figures/vmaf_vs_psnr_image_{dataset}.png",
            caption="../report/vmaf_vs_psnr.rst",
            category="Perceptual",
            subcategory="{dataset}",
        ),
        pdf="results/figures/vmaf_vs_psnr_image_{dataset}.pdf",
    log:
        "logs/plot_vmaf_vs_psnr/image_{dataset}.log",
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            perceptual.plot_vmaf_vs_psnr(
                input.table,
                input.corr,
                "image",
                [output.png, output.pdf],
                dataset=wildcards.dataset,
                codecs=study_codecs(config),
            )
