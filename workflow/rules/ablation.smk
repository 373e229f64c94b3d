# Stage: preprocessing ablation (rdflow.stages.ablation). Variant datasets (datasets of kind
# variant, or ablation.variants applied to ablation.datasets) are preprocessed images of a base
# dataset, then coded and aggregated like any dataset; the ablation table and figures put each
# variant beside its baseline.
from rdflow import metrics as _metrics, paths
from rdflow.stages import ablation as ablation_stage
from rdflow.stages import compress as compress_stage
from rdflow.stages import download as download_stage

VARIANTS = [d for d in DATASETS if config["datasets"][d]["kind"] == "variant"]
BASES = [d for d in DATASETS if ablation_stage.variants_of(config, d)]


def _variant_batches():
    """(variant, batch, images): one preprocessing job per batch of the coding jobs."""
    for v in VARIANTS:
        for b, images in enumerate(compress_stage.image_batches(config, v)):
            yield v, b, images


for _v, _b, _images in _variant_batches():
    _base = ablation_stage.base_of(config, _v)

    rule:
        name:
            f"preprocess_image__{rule_tag(_v)}_b{_b}"
        input:
            [download_stage.image_input(config, _base, i) for i in _images],
        output:
            [download_stage.image_input(config, _v, i) for i in _images],
        log:
            f"logs/preprocess_image/{_v}/batch{_b}.log",
        params:
            step=config["datasets"][_v]["preprocess"],
            where=f"datasets.{_v}.preprocess",
            sha256=[download_stage.image_sha256(config, _base, i) for i in _images],
        run:
            from rdflow.runtime import run_logged

            run_logged(
                log[0],
                ablation_stage.preprocess_images,
                list(input),
                list(output),
                params.step,
                where=params.where,
                sha256=params.sha256,
            )


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    ablation_table,
    plot_ablation,


rule ablation_table:
    input:
        lambda wc: [
            paths.IMAGE_RD_SUMMARY.format(dataset=d)
            for d in ablation_stage.members(config, wc.dataset)
        ],
    output:
        report(
            paths.ABLATION_CSV,
            caption="../report/ablation_csv.rst",
            category="Ablation",
            subcategory="{dataset}",
        ),
    log:
        "logs/ablation_table/{dataset}.log",
    wildcard_constraints:
        dataset=_alternatives(BASES),
    params:
        members=lambda wc: ablation_stage.members(config, wc.dataset),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            ablation_stage.write_ablation_table,
            config,
            wildcards.dataset,
            dict(zip(params.members, input)),
            output[0],
        )


rule plot_ablation:
    input:
        paths.ABLATION_CSV,
    output:
        png=report(
            f"{paths.ABLATION_FIGURE}.png",
            caption="../report/ablation_plot.rst",
            category="Ablation",
            subcategory="{dataset}",
        ),
        pdf=f"{paths.ABLATION_FIGURE}.pdf",
    log:
        "logs/plot_ablation/{dataset}_{metric}.log",
    wildcard_constraints:
        dataset=_alternatives(BASES),
        metric=_alternatives(_metrics.curve_columns()),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            ablation_stage.plot_ablation,
            config,
            wildcards.dataset,
            wildcards.metric,
            input[0],
            [output.png, output.pdf],
        )
