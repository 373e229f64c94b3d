# Stage: aggregation and figures. Tidy per-item CSVs, per-(codec, quality) summaries, RD plots.


rule aggregate_image:
    input:
        rows=lambda wc: study.image_rows(config, wc.dataset),
    output:
        csv=report(
            "results/image_rd_{dataset}.csv",
            caption="../report/image_rd_csv.rst",
            category="Image",
            subcategory="{dataset}",
        ),
        summary=report(
            "results/image_rd_{dataset}_summary.csv",
            caption="../report/image_rd_summary.rst",
            category="Image",
            subcategory="{dataset}",
        ),
    log:
        "logs/aggregate_image/{dataset}.log",
    run:
        from rdflow.aggregate import write_tables
        from rdflow.runtime import job_log

        with job_log(log[0]):
            write_tables(input.rows, output.csv, output.summary)


rule plot_image_rd:
    input:
        summary="results/image_rd_{dataset}_summary.csv",
    output:
        png=report(
            "results/figures/image_rd_{dataset}_{metric}.png",
            caption="../report/image_rd_plot.rst",
            category="Image",
            subcategory="{dataset}",
        ),
        pdf="results/figures/image_rd_{dataset}_{metric}.pdf",
    log:
        "logs/plot_image_rd/{dataset}_{metric}.log",
    wildcard_constraints:
        metric="psnr_rgb|ms_ssim_db",
    run:
        from rdflow.runtime import job_log
        from rdflow.plots import plot_image_rd

        with job_log(log[0]):
            plot_image_rd(
                config,
                wildcards.dataset,
                wildcards.metric,
                input.summary,
                [output.png, output.pdf],
            )


rule aggregate_video:
    input:
        rows=lambda wc: study.video_rows(config, wc.sequence)
        + video_codec_rows(config, wc.sequence),
    output:
        csv=report(
            "results/video_rd_{sequence}.csv",
            caption="../report/video_rd_csv.rst",
            category="Video",
            subcategory="{sequence}",
        ),
        summary=report(
            "results/video_rd_{sequence}_summary.csv",
            caption="../report/video_rd_summary.rst",
            category="Video",
            subcategory="{sequence}",
        ),
    log:
        "logs/aggregate_video/{sequence}.log",
    run:
        from rdflow.aggregate import write_tables
        from rdflow.runtime import job_log

        with job_log(log[0]):
            write_tables(
                input.rows, output.csv, output.summary, group=("sequence", "codec", "quality")
            )


rule plot_video_rd:
    input:
        summary="results/video_rd_{sequence}_summary.csv",
    output:
        png=report(
            "results/figures/video_rd_{sequence}_{metric}.png",
            caption="../report/video_rd_plot.rst",
            category="Video",
            subcategory="{sequence}",
        ),
        pdf="results/figures/video_rd_{sequence}_{metric}.pdf",
    log:
        "logs/plot_video_rd/{sequence}_{metric}.log",
    wildcard_constraints:
        metric="psnr_rgb|psnr_y|ms_ssim_db",
    run:
        import pandas as pd
        from rdflow.plots import LABELS, rd_curves, study_codecs
        from rdflow.runtime import job_log

        with job_log(log[0]):
            summary = pd.read_csv(input.summary)
            title = f"{wildcards.sequence}: {LABELS.get(wildcards.metric, wildcards.metric)} vs rate"
            rd_curves(
                summary,
                wildcards.metric,
                [output.png, output.pdf],
                title=title,
                codecs=study_codecs(config),
            )
