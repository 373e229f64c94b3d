# Stage: BD-rate (rdflow.stages.bd_rate). The study's BD-rate table: every codec against
# bd_rate.anchor per dataset and sequence, for the registered metrics the study measured
# (RD summaries, and the VMAF and detection tables when those stages run), and its page.
from rdflow import paths
from rdflow.stages import bd_rate as bd_rate_stage


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    bd_rate,


rule bd_rate:
    input:
        unpack(lambda wc: bd_rate_stage.inputs(config, study.all_targets(config, items=False))),
    output:
        csv=report(paths.BD_CSV, caption="../report/bd_rate_csv.rst", category="BD-rate"),
        html=report(paths.BD_HTML, caption="../report/bd_rate_html.rst", category="BD-rate"),
    log:
        "logs/bd_rate.log",
    params:
        settings=lambda wc: bd_rate_stage.settings(config),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            bd_rate_stage.write_bd_rate,
            config,
            input.image,
            input.video,
            output.csv,
            html=output.html,
            vmaf_csv=input.vmaf[0] if input.vmaf else None,
            detection_csv=input.detection[0] if input.detection else None,
        )
