# Stage: train. One job per (recipe, quality) trains a CompressAI model (rdflow.train):
# resources/trained/<name>/q<quality>.pth.tar and its recipe + loss curve (.json). A codec
# codes with it through weights: trained, model: <name>. `snakemake --cores 2 train_quickstart`
# trains the quickstart's shipped model again from its recipe
# (workflow/resources/models/quickstart/recipe.yaml).
from rdflow import train as _train, train_report as _train_report

TRAIN = _train.recipes(config)


localrules:
    download_training_image,


def training_inputs(wc):
    """The images a recipe trains on: its downloaded Kodak files, or its folder's images."""
    t = TRAIN[wc.name]
    if t.get("kodak"):
        return [f"{_train.recipe_folder(wc.name, t)}/{i}.png" for i in t["kodak"]]
    return [str(p) for p in _train.training_images(t, where=f"train.{wc.name}")]


def training_init(wc):
    """The finished model a quality starts from (train.<name>.init_from), if any."""
    init = TRAIN[wc.name].get("init_from")
    return [] if init in (None, int(wc.quality)) else [_train.model_path(wc.name, init)]


rule download_training_image:
    output:
        "resources/train/{name}/{image}.png",
    log:
        "logs/download/train/{name}/{image}.log",
    wildcard_constraints:
        name=_alternatives(TRAIN),
    params:
        url=lambda wc: url_join(TRAIN[wc.name]["base_url"], f"{wc.image}.png"),
        sha256=lambda wc: KODAK_SHA256[wc.image],
    run:
        from rdflow.download import fetch
        from rdflow.runtime import job_log

        with job_log(log[0]):
            fetch(params.url, output[0], sha256=params.sha256)


# script: its own process (torch threads, CUDA context and memory of its own), every core the
# job is given; checkpoints every checkpoint_every steps, so a killed job resumes.
rule train_model:
    input:
        images=training_inputs,
        init=training_init,
    output:
        model="resources/trained/{name}/q{quality}.pth.tar",
        info="resources/trained/{name}/q{quality}.json",
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
        [_train.model_path("quickstart", q) for q in TRAIN["quickstart"]["qualities"]],


rule training_table:
    """The loss curves of a trained model the study codes with (made here, or shipped)."""
    input:
        lambda wc: _train_report.info_files(config, wc.model),
    output:
        csv=report(
            "results/train_{model}.csv", caption="../report/train_csv.rst", category="Training"
        ),
        png=report(
            "results/figures/train_{model}.png",
            caption="../report/train_plot.rst",
            category="Training",
        ),
        pdf="results/figures/train_{model}.pdf",
    log:
        "logs/training_table/{model}.log",
    run:
        from rdflow.runtime import job_log

        with job_log(log[0]):
            _train_report.write_training_table(
                wildcards.model, list(input), output.csv, [output.png, output.pdf]
            )
