# Stage: machine vision (issue 4). Detection on the uncompressed frames (once per sequence, and
# per image dataset with labels) and on the decoded frames of every (codec, quality), then mAP
# against pseudo ground truth and real labels, one table and two figures per sequence/dataset.
# Detection jobs are run: jobs (threads of the Snakemake process) that hand their frames to a
# detection worker process (rdflow.stages.detection.detect, rdflow.worker.Pool): importing
# ultralytics sets torch's threads and OMP_NUM_THREADS to 1 process-wide, which must not happen
# to the Snakemake process whose threads run the coding jobs; a worker serves job after job, so
# torch/ultralytics are imported and the model loaded once per worker, not once per job.
# What depends on the backend (weights, download, GPU) is asked of its class (rdflow.detectors).
from rdflow import paths
from rdflow.stages import detection as detection_stage

MV_NAMES = detection_stage.unit_names(config)
# image codecs and sequence codecs (video_codecs.smk) alike


def mv_figure(figure, ext):
    stem = paths.DETECTION_FIGURE.format(mvsource="{mvsource}", mvname="{mvname}", figure=figure)
    return f"{stem}.{ext}"


rule download_detection_weights:
    """The backend's weights file when it downloads it (a bare ultralytics weights name with
    detection.offline: false; otherwise rdflow stops at parse time and says where to place it)."""
    output:
        f"{paths.DETECTOR_WEIGHTS}/{{detector_weights}}",
    log:
        "logs/download/detection_weights/{detector_weights}.log",
    wildcard_constraints:
        detector_weights=r"[^/]+",
    run:
        # the URL is not a params: (a changed mirror must not refetch weights already there)
        from rdflow.download import fetch
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            fetch,
            detection_stage.weights_url(config, wildcards.detector_weights),
            output[0],
        )


rule detect_original:
    input:
        frames=lambda wc: detection_stage.original_inputs(config, wc.mvsource, wc.mvname),
        weights=lambda wc: detection_stage.weights_inputs(config),
    output:
        paths.DETECTIONS_ORIGINAL,
    log:
        "logs/detect_original/{mvsource}/{mvname}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    threads: 1
    resources:
        gpu=lambda wc: detection_stage.gpu(config),
        mem_mb=8000,
        runtime=60,
    params:
        detector=lambda wc: detection_stage.detector_options(config, wc.mvsource, wc.mvname),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            detection_stage.detect,
            config,
            source=wildcards.mvsource,
            name=wildcards.mvname,
            out=output[0],
            codec=None,
            quality=None,
            threads=threads,
        )


rule detect_decoded:
    input:
        # the coding jobs' temp() reconstructions (the batches' recon folders of PNGs, or a
        # sequence codec's file of decoded frames): listed here, they live until this job ran
        frames=lambda wc: detection_stage.decoded_paths(
            config, wc.mvsource, wc.mvname, wc.codec, wc.quality
        ),
        weights=lambda wc: detection_stage.weights_inputs(config),
    output:
        paths.DETECTIONS_DECODED,
    log:
        "logs/detect_decoded/{mvsource}/{mvname}/{codec}/q{quality}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
        codec=_alternatives(CODECS + VIDEO_CODEC_NAMES),
    threads: 1
    resources:
        gpu=lambda wc: detection_stage.gpu(config),
        mem_mb=8000,
        runtime=60,
    params:
        detector=lambda wc: detection_stage.detector_options(config, wc.mvsource, wc.mvname),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            detection_stage.detect,
            config,
            source=wildcards.mvsource,
            name=wildcards.mvname,
            out=output[0],
            codec=wildcards.codec,
            quality=int(wildcards.quality),
            threads=threads,
        )


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    evaluate_detection,
    aggregate_machine_vision,
    plot_machine_vision,


rule evaluate_detection:
    input:
        original=paths.DETECTIONS_ORIGINAL,
        decoded=paths.DETECTIONS_DECODED,
        rows=lambda wc: detection_stage.rate_inputs(
            config, wc.mvsource, wc.mvname, wc.codec, wc.quality
        ),
    output:
        paths.DETECTION_EVALUATION,
    log:
        "logs/evaluate_detection/{mvsource}/{mvname}/{codec}/q{quality}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
        codec=_alternatives(CODECS + VIDEO_CODEC_NAMES),
    params:
        labels=lambda wc: detection_stage.labels(config).get(wc.mvname),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            detection_stage.evaluate,
            config,
            source=wildcards.mvsource,
            name=wildcards.mvname,
            codec=wildcards.codec,
            quality=int(wildcards.quality),
            original=input.original,
            decoded=input.decoded,
            rate_rows=detection_stage.rate_rows(
                config, wildcards.mvsource, wildcards.mvname, wildcards.codec, wildcards.quality
            ),
            out=output[0],
        )


rule aggregate_machine_vision:
    input:
        lambda wc: detection_stage.evaluation_paths(config),
    output:
        report(paths.DETECTION_CSV, caption="../report/detect_csv.rst", category="Machine vision"),
    log:
        "logs/aggregate_machine_vision.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], detection_stage.table, list(input), output[0])


rule plot_machine_vision:
    input:
        paths.DETECTION_CSV,
    output:
        map_png=report(
            mv_figure("map", "png"),
            caption="../report/detect_map.rst",
            category="Machine vision",
            subcategory="{mvname}",
        ),
        map_pdf=mv_figure("map", "pdf"),
        proxy_png=report(
            mv_figure("proxy", "png"),
            caption="../report/detect_proxy.rst",
            category="Machine vision",
            subcategory="{mvname}",
        ),
        proxy_pdf=mv_figure("proxy", "pdf"),
    log:
        "logs/plot_machine_vision/{mvsource}_{mvname}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            detection_stage.plot_unit,
            input[0],
            wildcards.mvsource,
            wildcards.mvname,
            [output.map_png, output.map_pdf],
            [output.proxy_png, output.proxy_pdf],
            codecs=study_codecs(config),
        )
