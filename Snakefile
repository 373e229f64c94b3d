# rdflow: rate–distortion (and rate–accuracy, rate–cost) benchmarking of image and video codecs.
# The Snakefile is only the entry point: one rule file per DAG stage, logic in src/rdflow.
import os

from snakemake.utils import min_version

min_version("9.0")


# The study: config.yaml (the offline quickstart; the working directory's own, else the one
# beside this Snakefile) unless --configfile names one: a study file then REPLACES it (Snakemake
# would otherwise merge it into config.yaml). --config still adds to either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml" if os.path.exists("config.yaml") else f"{workflow.basedir}/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/video_codecs.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/vmaf.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/complexity.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/bd_rate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),


rule image_study:
    """Only the image datasets' tables and figures (`snakemake --cores 8 image_study`)."""
    input:
        aggregate_stage.image_targets(config),


rule video_study:
    """Only the video sequences' tables and figures (`snakemake --cores 8 video_study`)."""
    input:
        aggregate_stage.video_targets(config),
