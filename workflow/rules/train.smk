# Stage: train (rdflow.stages.train, the training loop rdflow.training). One job per (recipe,
# quality) trains a CompressAI model: resources/trained/<name>/q<quality>.pth.tar and its
# recipe + loss curve (.json). A codec codes with it through weights: trained, model: <name>.
# `snakemake --cores 2 train_quickstart` trains the quickstart's shipped model again from its
# recipe (workflow/resources/models/quickstart/recipe.yaml).
from rdflow import paths, training
from rdflow.stages import train as train_stage

TRAIN = train_stage.recipes(config)


localrules:
    download_training_image,


def training_inputs(wc):
    """The images a recipe trains on: its downloaded Kodak files, or its folder's images."""
    t = TRAIN[wc.name]
    if t.get("kodak"):
        return [paths.TRAIN_IMAGE.format(name=wc.name, image=i) for i in t["kodak"]]
    return [str(p) for p in training.training_images(t, where=f"train.{wc.name}")]


def training_init(wc):
    """The finished model a quality starts from (train.<name>.init_from), if any."""
    init = TRAIN[wc.name].get("init_from")
    return [] if init in (None, int(wc.quality)) else [training.model_path(wc.name, init)]


rule download_training_image:
    output:
        paths.TRAIN_IMAGE,
    log:
        "logs/download/train/{name}/{image}.log",
    wildcard_constraints:
        name=_alternatives(TRAIN),
    params:
        url=lambda wc: url_join(TRAIN[wc.name]["base_url"], f"{wc.image}.png"),
        sha256=lambda wc: KODAK_SHA256[wc.image],
    run:
        from rdflow.download import fetch
        from rdflow.runtime import run_logged

        run_logged(log[0], fetch, params.url, output[0], sha256=params.sha256)


# script: its own process (torch threads, CUDA context and memory of its own), every core the
# job is given; checkpoints every checkpoint_every steps, so a killed job resumes.
rule train_model:
    input:
        images=training_inputs,
        init=training_init,
    output:
        model=paths.TRAINED_MODEL,
        info=paths.TRAINED_INFO,
    log:
        "logs/train/{name}/q{quality}.log",
    wildcard_constraints:
        name=_alternatives(TRAIN),
    conda:
        "../../envs/rdflow.yaml"
    threads: 2
    resources:
        gpu=int(config["device"] != "cpu"),
    params:
        recipe=lambda wc: TRAIN[wc.name],
        device=config["device"],
    script:
        "../../scripts/train.py"


rule train_quickstart:
    """Train the quickstart's model again (resources/trained/quickstart/); copy the files into
    workflow/resources/models/quickstart/ to ship them (README, "The shipped model")."""
    input:
        [training.model_path("quickstart", q) for q in TRAIN["quickstart"]["qualities"]],


# Tables, figures and evaluations of small files: under --profile profiles/slurm they run in the
# submitting Snakemake, not as SLURM jobs of their own (each sbatch costs the plugin's 5-s wait,
# a queue slot and a Snakemake start for a second of work).
localrules:
    training_table,


rule training_table:
    """The loss curves of a trained model the study codes with (made here, or shipped)."""
    input:
        lambda wc: train_stage.info_files(config, wc.model),
    output:
        csv=report(paths.TRAIN_CSV, caption="../report/train_csv.rst", category="Training"),
        png=report(
            f"{paths.TRAIN_FIGURE}.png",
            caption="../report/train_plot.rst",
            category="Training",
        ),
        pdf=f"{paths.TRAIN_FIGURE}.pdf",
    log:
        "logs/training_table/{model}.log",
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            train_stage.write_training_table,
            wildcards.model,
            list(input),
            output.csv,
            [output.png, output.pdf],
        )
