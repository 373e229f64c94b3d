# Stage: aggregation and figures (rdflow.stages.aggregate). Tidy per-item CSVs,
# per-(codec, quality) summaries, RD plots; every metric column comes from the registry
# (rdflow.metrics).
from rdflow import metrics as _metrics, paths
from rdflow.stages import aggregate as aggregate_stage
from rdflow.stages import compress as compress_stage
from rdflow.stages import video_codecs as video_codecs_stage


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    aggregate_image,
    plot_image_rd,
    aggregate_video,
    plot_video_rd,


rule aggregate_image:
    input:
        # the batch folders (their rows are read by the job): Snakemake tracks folders
        batches=lambda wc: compress_stage.image_folders(config, wc.dataset),
    output:
        csv=report(
            paths.IMAGE_RD,
            caption="../report/image_rd_csv.rst",
            category="Image",
            subcategory="{dataset}",
        ),
        summary=report(
            paths.IMAGE_RD_SUMMARY,
            caption="../report/image_rd_summary.rst",
            category="Image",
            subcategory="{dataset}",
        ),
    log:
        "logs/aggregate_image/{dataset}.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            aggregate_stage.write_tables,
            compress_stage.image_rows(config, wildcards.dataset),
            output.csv,
            output.summary,
        )


rule plot_image_rd:
    input:
        summary=paths.IMAGE_RD_SUMMARY,
    output:
        png=report(
            f"{paths.IMAGE_RD_FIGURE}.png",
            caption="../report/image_rd_plot.rst",
            category="Image",
            subcategory="{dataset}",
        ),
        pdf=f"{paths.IMAGE_RD_FIGURE}.pdf",
    log:
        "logs/plot_image_rd/{dataset}_{metric}.log",
    wildcard_constraints:
        metric=_alternatives(_metrics.curve_columns()),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            aggregate_stage.plot_image_rd,
            config,
            wildcards.dataset,
            wildcards.metric,
            input.summary,
            [output.png, output.pdf],
        )


rule aggregate_video:
    input:
        batches=lambda wc: compress_stage.video_folders(config, wc.sequence),
        sequence_rows=lambda wc: video_codecs_stage.sequence_rows(config, wc.sequence),
    output:
        csv=report(
            paths.VIDEO_RD,
            caption="../report/video_rd_csv.rst",
            category="Video",
            subcategory="{sequence}",
        ),
        summary=report(
            paths.VIDEO_RD_SUMMARY,
            caption="../report/video_rd_summary.rst",
            category="Video",
            subcategory="{sequence}",
        ),
    log:
        "logs/aggregate_video/{sequence}.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            aggregate_stage.write_tables,
            compress_stage.video_rows(config, wildcards.sequence) + list(input.sequence_rows),
            output.csv,
            output.summary,
            group=("sequence", "codec", "quality"),
        )


rule plot_video_rd:
    input:
        summary=paths.VIDEO_RD_SUMMARY,
    output:
        png=report(
            f"{paths.VIDEO_RD_FIGURE}.png",
            caption="../report/video_rd_plot.rst",
            category="Video",
            subcategory="{sequence}",
        ),
        pdf=f"{paths.VIDEO_RD_FIGURE}.pdf",
    log:
        "logs/plot_video_rd/{sequence}_{metric}.log",
    wildcard_constraints:
        metric=_alternatives(_metrics.curve_columns()),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            aggregate_stage.plot_video_rd,
            config,
            wildcards.sequence,
            wildcards.metric,
            input.summary,
            [output.png, output.pdf],
        )
