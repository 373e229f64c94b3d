# Stage: export (rdflow.stages.export). The RD summary of an image dataset as CompressAI's
# results JSON, one file per codec: `python -m compressai.utils.plot` draws it beside the
# published curves.
from rdflow import paths
from rdflow.stages import export as export_stage


rule export_compressai:
    input:
        summary=paths.IMAGE_RD_SUMMARY,
    output:
        json=paths.COMPRESSAI_JSON,
    log:
        "logs/export_compressai/{dataset}/{codec}.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            export_stage.write_compressai_json,
            input.summary,
            wildcards.dataset,
            wildcards.codec,
            output.json,
        )
