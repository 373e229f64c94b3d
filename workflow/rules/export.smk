# Stage: export (rdflow.stages.export). The RD summary of an image dataset as CompressAI's
# results JSON, one file per codec: `python -m compressai.utils.plot` draws it beside the
# published curves. One job per dataset (rule export_compressai__<dataset>, literal outputs)
# writes its codecs' files: they are all read from the one summary, so they rerun together. A
# localrule: on SLURM it runs in the submitting Snakemake.
from rdflow import paths
from rdflow.stages import export as export_stage

for _d, _files in export_stage.jobs(config):

    rule:
        name:
            f"export_compressai__{rule_tag(_d)}"
        input:
            summary=paths.IMAGE_RD_SUMMARY.format(dataset=_d),
        output:
            list(_files.values()),
        log:
            f"logs/export_compressai/{_d}.log",
        localrule: True
        params:
            dataset=_d,
            files=_files,
        run:
            from rdflow.runtime import run_logged

            run_logged(
                log[0],
                export_stage.write_dataset_json,
                input.summary,
                params.dataset,
                params.files,
            )
