# Stage: complexity (resource profiling, issue 6). Codec complexity (time, peak RSS/VRAM, MACs,
# parameters, network vs entropy-coding time) per (codec, quality, resolution, device), and the
# benchmark table (paths.BENCHMARKS_CSV) gathering every benchmark: file of the heavy rules. Logic:
# rdflow.stages.complexity (stage) and rdflow.measure (measuring); README, "Complexity".
from types import SimpleNamespace

from rdflow import paths
from rdflow.stages import complexity as cplx

CPLX_CODECS = cplx.codec_names(config) if cplx.enabled(config) else []


def complexity_image(wc):
    """The image measured: a dataset's image (downloaded by its rule when needed), a file, or none."""
    c = cplx.image_choice(config)
    if isinstance(c, tuple):
        return [image_input(SimpleNamespace(dataset=c[0], image=c[1]))]
    return [c] if c else []


def complexity_job_threads(wc):
    """Every core: a timing job must have the machine to itself (Snakemake then starts nothing
    beside it). Without --cores (cluster executors) the job asks for complexity.threads CPUs;
    give it a whole node there with set-threads/set-resources in the profile."""
    try:
        return workflow.cores
    except Exception:  # WorkflowError: no --cores given
        return cplx.settings(config)["threads"] or 1


# One job per codec: all its selected qualities, resolutions and devices. script: (its own
# process, not a thread of Snakemake's), so that the benchmark and the measurements see the
# job's processes only; each (codec, quality) is measured in a fresh child (complexity.isolate).
rule complexity_codec:
    input:
        unpack(lambda wc: cplx.weights_inputs(config, wc.codec)),
        image=complexity_image,
    output:
        paths.COMPLEXITY_CODEC_CSV,
    log:
        "logs/complexity/{codec}.log",
    benchmark:
        "benchmarks/complexity/{codec}.tsv"
    wildcard_constraints:
        codec=_alternatives(CPLX_CODECS),
    conda:
        "../../envs/rdflow.yaml"
    threads: complexity_job_threads
    resources:
        gpu=lambda wc: cplx.gpus(config, wc.codec),
    params:
        measured=lambda wc: cplx.job_params(config, wc.codec),  # a change reruns the job
    script:
        "../../scripts/complexity.py"


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    complexity_table,
    plot_complexity,
    gather_benchmarks,


rule complexity_table:
    input:
        [cplx.codec_csv(c) for c in CPLX_CODECS],
    output:
        report(cplx.TABLE, caption="../report/complexity_csv.rst", category="Complexity"),
    log:
        "logs/complexity_table.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], cplx.write_table, input, output[0])


rule plot_complexity:
    input:
        cplx.TABLE,
    output:
        bpp_png=report(
            f"{paths.COMPLEXITY_BPP_TIME_FIGURE}.png",
            caption="../report/complexity_bpp_time.rst",
            category="Complexity",
        ),
        bpp_pdf=f"{paths.COMPLEXITY_BPP_TIME_FIGURE}.pdf",
        res_png=report(
            f"{paths.COMPLEXITY_RESOLUTION_FIGURE}.png",
            caption="../report/complexity_resolution.rst",
            category="Complexity",
        ),
        res_pdf=f"{paths.COMPLEXITY_RESOLUTION_FIGURE}.pdf",
    log:
        "logs/plot_complexity.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], cplx.plot, input[0], output, codecs=study_codecs(config))


# Runs last: its inputs are every other final target. The benchmark files themselves are read
# when the job runs (benchmarks/**/*.tsv as they are then), not listed as inputs: a list
# globbed while the DAG is built would be empty on a first run and full on the next, and that
# change of the input set alone would make Snakemake rerun this job every second time.
rule gather_benchmarks:
    input:
        cplx.benchmark_inputs(study.all_targets(config, items=False)),
    output:
        report(
            cplx.BENCHMARKS_CSV,
            caption="../report/complexity_benchmarks.rst",
            category="Complexity",
        ),
    log:
        "logs/gather_benchmarks.log",
    params:
        patterns=lambda wc: {r.name: str(r.benchmark) for r in workflow.rules if r.benchmark},
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], cplx.gather_benchmarks, output[0], params.patterns)
