# Stage: machine vision (issue 4). Detection on the uncompressed frames (once per sequence, and
# per image dataset with labels) and on the decoded frames of every (codec, quality), then mAP
# against pseudo ground truth and real labels, one table and two figures per sequence/dataset.
# Detection jobs are run: jobs (threads of the Snakemake process) that hand their frames to a
# detection worker process (rdflow.machine_vision.detect): importing ultralytics sets torch's
# threads and OMP_NUM_THREADS to 1 process-wide, which must not happen to the Snakemake process
# whose threads run the coding jobs; a worker serves job after job, so torch/ultralytics are
# imported and the model loaded once per worker, not once per job. Logic: rdflow.machine_vision.
import rdflow.machine_vision as mv

MV_NAMES = sorted({n for _, n in mv.units(config)}) if mv.enabled(config) else []


def mv_weights(wc):
    w = mv.weights_path(config)
    return [str(w)] if w is not None else []


def mv_gpu(wc):
    o = mv.detector_options(config)
    return int(o["backend"] == "yolo" and o.get("device", "cpu") != "cpu")


rule download_detection_weights:
    """A bare ultralytics weights name with detection.offline: false (otherwise rdflow stops at
    parse time and says where to place the file)."""
    output:
        f"{mv.WEIGHTS_DIR}/{{yolo_weights}}",
    log:
        "logs/download/detection_weights/{yolo_weights}.log",
    wildcard_constraints:
        yolo_weights=r"[^/]+\.pt",
    run:
        # the URL is not a params: (a changed mirror must not refetch weights already there)
        from rdflow.download import fetch
        from rdflow.runtime import job_log

        with job_log(log[0]):
            url = mv.yolo_asset_url(wildcards.yolo_weights, mv.settings(config).get("base_url"))
            fetch(url, output[0])


rule detect_original:
    input:
        frames=lambda wc: mv.original_inputs(config, wc.mvsource, wc.mvname),
        weights=mv_weights,
    output:
        "results/detection/{mvsource}/{mvname}/original.json",
    log:
        "logs/detect_original/{mvsource}/{mvname}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    threads: 1
    resources:
        gpu=mv_gpu,
    params:
        detector=lambda wc: mv.detector_options(config, wc.mvsource, wc.mvname),
    run:
        from rdflow.machine_vision import detect
        from rdflow.runtime import job_log

        with job_log(log[0]):
            detect(
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
        # the coding jobs' temp() reconstructions: listed here, they live until this job ran
        frames=lambda wc: mv.decoded_paths(config, wc.mvsource, wc.mvname, wc.codec, wc.quality),
        weights=mv_weights,
    output:
        "results/detection/{mvsource}/{mvname}/{codec}/q{quality}.json",
    log:
        "logs/detect_decoded/{mvsource}/{mvname}/{codec}/q{quality}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    threads: 1
    resources:
        gpu=mv_gpu,
    params:
        detector=lambda wc: mv.detector_options(config, wc.mvsource, wc.mvname),
    run:
        from rdflow.machine_vision import detect
        from rdflow.runtime import job_log

        with job_log(log[0]):
            detect(
                config,
                source=wildcards.mvsource,
                name=wildcards.mvname,
                out=output[0],
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                threads=threads,
            )


rule evaluate_detection:
    input:
        original="results/detection/{mvsource}/{mvname}/original.json",
        decoded="results/detection/{mvsource}/{mvname}/{codec}/q{quality}.json",
        rows=lambda wc: mv.rate_rows(config, wc.mvsource, wc.mvname, wc.codec, wc.quality),
    output:
        "results/detection/{mvsource}/{mvname}/{codec}/q{quality}_eval.json",
    log:
        "logs/evaluate_detection/{mvsource}/{mvname}/{codec}/q{quality}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    params:
        labels=lambda wc: mv.labels(config).get(wc.mvname),
    run:
        from rdflow.machine_vision import evaluate_job
        from rdflow.runtime import job_log

        with job_log(log[0]):
            evaluate_job(
                config,
                source=wildcards.mvsource,
                name=wildcards.mvname,
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                original=input.original,
                decoded=input.decoded,
                rate_rows=list(input.rows),
                out=output[0],
            )


rule aggregate_machine_vision:
    input:
        lambda wc: mv.evaluation_paths(config),
    output:
        report(mv.CSV, caption="../report/detect_csv.rst", category="Machine vision"),
    log:
        "logs/aggregate_machine_vision.log",
    run:
        from rdflow.machine_vision import write_table
        from rdflow.runtime import job_log

        with job_log(log[0]):
            write_table(list(input), output[0])


rule plot_machine_vision:
    input:
        mv.CSV,
    output:
        map_png=report(
            "results/figures/machine_vision_{mvsource}_{mvname}_map.png",
            caption="../report/detect_map.rst",
            category="Machine vision",
            subcategory="{mvname}",
        ),
        map_pdf="results/figures/machine_vision_{mvsource}_{mvname}_map.pdf",
        proxy_png=report(
            "results/figures/machine_vision_{mvsource}_{mvname}_proxy.png",
            caption="../report/detect_proxy.rst",
            category="Machine vision",
            subcategory="{mvname}",
        ),
        proxy_pdf="results/figures/machine_vision_{mvsource}_{mvname}_proxy.pdf",
    log:
        "logs/plot_machine_vision/{mvsource}_{mvname}.log",
    wildcard_constraints:
        mvsource="video|image",
        mvname=_alternatives(MV_NAMES),
    run:
        from rdflow.machine_vision import plot_unit
        from rdflow.runtime import job_log

        with job_log(log[0]):
            plot_unit(
                input[0],
                wildcards.mvsource,
                wildcards.mvname,
                [output.map_png, output.map_pdf],
                [output.proxy_png, output.proxy_pdf],
                codecs=study_codecs(config),
            )
