# Stage: report (rdflow.stages.report). The run's environment (versions, device, machine),
# shown on the report's front page (`snakemake --report report.html`).
from rdflow import paths
from rdflow.stages import report as report_stage


rule environment:
    output:
        report(
            paths.ENV_CSV,
            caption="../report/environment.rst",
            category="Study",
            labels=lambda wildcards, output: report_stage.environment_labels(output[0]),
        ),
    log:
        "logs/environment.log",
    params:
        versions=report_stage.package_versions(),
        device=config.get("device", "auto"),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0], report_stage.write_environment, config, output[0], repo=workflow.basedir
        )
