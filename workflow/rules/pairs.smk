# Stage: pair scoring (rdflow.stages.pairs). Given (reference, distorted) images or sequences
# are scored as they are (nothing is coded). Outputs: one per-frame CSV per pair, the pooled
# table, a per-frame figure per sequence pair. `snakemake --cores 2 pairs` makes only these.
from rdflow import paths
from rdflow.stages import pairs as pairs_stage

PAIRS = sorted(pairs_stage.pairs(config))


rule pair_score:
    input:
        reference=lambda wc: pairs_stage.entry(config, wc.pair)["reference"],
        distorted=lambda wc: pairs_stage.entry(config, wc.pair)["distorted"],
    output:
        csv=paths.PAIR_CSV,
    log:
        "logs/pairs/{pair}.log",
    wildcard_constraints:
        pair=_alternatives(PAIRS),
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        entry=lambda wc: pairs_stage.entry(config, wc.pair),
        vmaf_model=pairs_stage.vmaf_model(config),
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            pairs_stage.score_job,
            config=config,
            name=wildcards.pair,
            out_csv=output.csv,
            threads=threads,
        )


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    pairs_table,
    plot_pair,


rule pairs_table:
    input:
        csvs=pairs_stage.pair_csvs(config),
    output:
        table=report(paths.PAIRS_TABLE, category="Pairs"),
    log:
        "logs/pairs_table.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], pairs_stage.table_job, config, list(input.csvs), output.table)


rule plot_pair:
    input:
        csv=paths.PAIR_CSV,
    output:
        png=report(paths.PAIR_FIGURE, category="Pairs", subcategory="{pair}"),
    log:
        "logs/plot_pair/{pair}.log",
    wildcard_constraints:
        pair=_alternatives(PAIRS),
    run:
        from rdflow.runtime import run_logged

        run_logged(log[0], pairs_stage.plot_job, config, wildcards.pair, input.csv, output.png)


rule pairs:
    """Only the pair scores (`snakemake --cores 2 pairs`): the pooled table, each pair's
    per-frame CSV and each sequence pair's figure."""
    input:
        pairs_stage.targets(config),
