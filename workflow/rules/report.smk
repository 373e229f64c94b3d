# Stage: analysis and report. Preprocessing variants (the ablation's derived datasets), the study's
# BD-rate table, and the run's environment (versions, device) shown on the report's front page.
# Logic in rdflow.ablation and rdflow.analysis.
from types import SimpleNamespace as _Item

from rdflow import ablation as _ablation, analysis as _analysis

VARIANTS = [d for d in DATASETS if config["datasets"][d]["kind"] == "variant"]
BASES = [d for d in DATASETS if _ablation.variants_of(config, d)]


def variant_source(wc):
    """The base dataset's image a variant image is made from."""
    return image_input(_Item(dataset=config["datasets"][wc.variant]["of"], image=wc.image))


def variant_source_sha256(wc):
    return image_sha256(_Item(dataset=config["datasets"][wc.variant]["of"], image=wc.image))


def ablation_members(wc):
    """The baseline dataset and its variants, in this order."""
    return [wc.dataset] + _ablation.variants_of(config, wc.dataset)


def environment_labels(wildcards, output):
    """The recorded environment as report labels (read when the report is made)."""
    env = _analysis.read_environment(output[0])
    return {k: str(v).replace("{", "(").replace("}", ")") for k, v in env.items()}


rule preprocess_image:
    input:
        image=variant_source,
    output:
        "resources/variants/{variant}/{image}.png",
    log:
        "logs/preprocess_image/{variant}/{image}.log",
    wildcard_constraints:
        variant=_alternatives(VARIANTS),
    params:
        step=lambda wc: config["datasets"][wc.variant]["preprocess"],
        sha256=variant_source_sha256,
    run:
        from rdflow.ablation import preprocess_image
        from rdflow.runtime import job_log

        with job_log(log[0]):
            where = f"datasets.{wildcards.variant}.preprocess"
            preprocess_image(
                input.image, output[0], params.step, where=where, sha256=params.sha256
            )


rule ablation_table:
    input:
        lambda wc: [f"results/image_rd_{d}_summary.csv" for d in ablation_members(wc)],
    output:
        report(
            "results/ablation_{dataset}.csv",
            caption="../report/ablation_csv.rst",
            category="Ablation",
            subcategory="{dataset}",
        ),
    log:
        "logs/ablation_table/{dataset}.log",
    wildcard_constraints:
        dataset=_alternatives(BASES),
    params:
        members=ablation_members,
    run:
        from rdflow.ablation import write_ablation_table
        from rdflow.runtime import job_log

        with job_log(log[0]):
            summaries = dict(zip(params.members, input))
            write_ablation_table(config, wildcards.dataset, summaries, output[0])


rule plot_ablation:
    input:
        "results/ablation_{dataset}.csv",
    output:
        png=report(
            "results/figures/ablation_{dataset}_{metric}.png",
            caption="../report/ablation_plot.rst",
            category="Ablation",
            subcategory="{dataset}",
        ),
        pdf="results/figures/ablation_{dataset}_{metric}.pdf",
    log:
        "logs/plot_ablation/{dataset}_{metric}.log",
    wildcard_constraints:
        dataset=_alternatives(BASES),
        metric="psnr_rgb|ms_ssim_db",
    run:
        from rdflow.ablation import plot_ablation
        from rdflow.runtime import job_log

        with job_log(log[0]):
            plot_ablation(
                config, wildcards.dataset, wildcards.metric, input[0], [output.png, output.pdf]
            )


rule bd_rate:
    input:
        unpack(lambda wc: _analysis.bd_rate_inputs(config)),
    output:
        csv=report(_analysis.BD_CSV, caption="../report/bd_rate_csv.rst", category="BD-rate"),
        html=report(
            "results/bd_rate.html", caption="../report/bd_rate_html.rst", category="BD-rate"
        ),
    log:
        "logs/bd_rate.log",
    params:
        settings=lambda wc: _analysis.settings(config),
    run:
        from rdflow.analysis import write_bd_rate
        from rdflow.runtime import job_log

        with job_log(log[0]):
            write_bd_rate(
                config,
                input.image,
                input.video,
                output.csv,
                html=output.html,
                vmaf_csv=input.vmaf[0] if input.vmaf else None,
                detection_csv=input.detection[0] if input.detection else None,
            )


rule environment:
    output:
        report(
            _analysis.ENV_CSV,
            caption="../report/environment.rst",
            category="Study",
            labels=environment_labels,
        ),
    log:
        "logs/environment.log",
    params:
        versions=_analysis.package_versions(),
        device=config.get("device", "auto"),
    run:
        from rdflow.analysis import write_environment
        from rdflow.runtime import job_log

        with job_log(log[0]):
            write_environment(config, output[0], repo=workflow.basedir)
