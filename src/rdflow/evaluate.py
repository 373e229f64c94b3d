"""``rdflow-eval``: evaluate a folder of checkpoints of one architecture on Kodak, in one line.

What ``python -m compressai.utils.eval_model checkpoint DATASET -a ARCH -p CKPT...`` does, run
by the workflow (real bitstream files, the same metrics, JPEG as the BD-rate anchor, CompressAI's
published curves in the figures)::

    rdflow-eval bmshj2018-hyperprior runs/hp/            # every *.pth.tar / .pth / .pt / .ckpt
    rdflow-eval mbt2018-mean a-q1.pth.tar a-q3.pth.tar --name mine --cores 8
    rdflow-eval cheng2020-anchor ckpts/ --dataset path/to/images --metric ms-ssim

It writes a study file (``results/eval/<name>/study.yaml``, or ``<out>/study.yaml`` with
``-o``): the Kodak dataset (downloaded and SHA-256 checked, as ``kind: kodak``), or a folder of
images; one ``kind: learned, weights: checkpoint`` codec with the checkpoints; JPEG as the
anchor; the published Kodak curves of the architecture, JPEG, BPG and VTM. Then it runs
``snakemake`` on it in a subprocess (that folder is the run's working directory) and prints
where the CompressAI JSON (``results/compressai/<dataset>/<name>.json``, the format of
eval_model's output), the tidy CSV, the figures and the BD-rate table are. Arguments after
``--`` go to snakemake (``-- -n``, ``-- --profile profiles/slurm``).

Each checkpoint's quality is read from its name (``q<N>`` or ``quality<N>``, ``quality-<N>``,
``quality_<N>``); when not every name has one, two names give the same or one is outside the
architecture's range, the checkpoints get qualities 1..n in the natural sort order of their
names (and the command says so). Each file is loaded (``weights_only``) and built as the
architecture before anything runs, and its SHA-256 is pinned in the study
(``checkpoint_sha256``): a checkpoint overwritten later is refused, not silently mixed in.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from . import RdflowError, paths

#: file names taken from a folder (eval_model takes any path it is given: so does a file here)
SUFFIXES = (".pth.tar", ".pth", ".pt", ".ckpt", ".tar")
QUALITY_PATTERNS = (re.compile(r"quality[-_]?(\d+)", re.I), re.compile(r"(?<![a-z])q(\d+)", re.I))
ANCHOR = "jpeg"
ANCHOR_QUALITIES = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
REFERENCE = paths.SHIPPED / "reference" / "compressai"
#: published Kodak curves drawn beside the architecture's own (files of REFERENCE/image/kodak)
OTHER_CURVES = ("jpeg", "bpg_444_x265_ycbcr", "vtm")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# -- the checkpoints ------------------------------------------------------------------------------
def find_checkpoints(sources: list[str]) -> list[Path]:
    """The checkpoint files: each file given, and the checkpoint files (SUFFIXES) of each folder
    given (not recursive)."""
    out = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(SUFFIXES))
            if not found:
                raise RdflowError(f"no checkpoints found in {p}: no file there ends with "
                                  f"{', '.join(SUFFIXES)}; name the files, or the folder holding them")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise RdflowError(f"checkpoint {p} does not exist (give checkpoint files or folders)")
    return list(dict.fromkeys(p.resolve() for p in out))


def quality_of(name: str) -> int | None:
    """The quality a file name gives (``q3``, ``quality3``, ``quality-3``, ``quality_3``)."""
    for pat in QUALITY_PATTERNS:
        m = pat.search(name)
        if m:
            return int(m.group(1))
    return None


def natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def assign_qualities(files: list[Path], low: int, high: int) -> tuple[list[tuple[int, Path]], str]:
    """(quality, file) pairs in quality order, and a note when qualities were not read from the
    names (why, and which file got which)."""
    parsed = [quality_of(f.name) for f in files]
    if None in parsed:
        why = f"{files[parsed.index(None)].name} has no q<N> / quality<N> in its name"
    elif len(set(parsed)) < len(parsed):
        dup = next(q for q in parsed if parsed.count(q) > 1)
        why = f"two names give quality {dup}"
    elif not all(low <= q <= high for q in parsed):
        why = f"quality {next(q for q in parsed if not low <= q <= high)} is outside {low}..{high}"
    else:
        return sorted(zip(parsed, files)), ""
    ordered = sorted(files, key=natural_key)
    if len(ordered) > high - low + 1:
        raise RdflowError(f"{len(ordered)} checkpoints but qualities run {low}..{high} for this "
                          f"architecture, and {why}: name each file with its quality (q1 ... q{high})")
    pairs = list(zip(range(low, low + len(ordered)), ordered))
    note = (f"qualities not read from the names ({why}): {low}..{low + len(ordered) - 1} in the "
            "natural sort order of the names: " + ", ".join(f"q{q}={f.name}" for q, f in pairs))
    return pairs, note


def check_checkpoints(architecture: str, pairs: list[tuple[int, Path]]) -> None:
    """Each file loads safely (no code runs from it) and builds ``architecture``; otherwise an
    RdflowError naming the file (and the architecture it does load as, when one does)."""
    from compressai.zoo.image import model_architectures

    from .codecs.learned import ARCH_QUALITIES, _unwrap_state_dict  # what the coding job loads
    from .weights import load_torch_file

    for q, path in pairs:
        obj = load_torch_file(path, what=f"checkpoint (quality {q})",
                              fix="Give a state dict saved by torch.save(net.state_dict(), ...)")
        state = _unwrap_state_dict(obj)
        error = _build_error(model_architectures[architecture], state)
        if error is None:
            continue
        fits = [a for a in sorted(ARCH_QUALITIES)
                if a != architecture and _build_error(model_architectures[a], state) is None]
        hint = (f"it loads as {', '.join(fits)}: pass that architecture" if fits else
                "is it a checkpoint of another architecture, or of another model size?")
        raise RdflowError(f"checkpoint {path} does not fit architecture {architecture}: "
                          f"{error}; {hint}")


def _build_error(cls, state) -> str | None:
    """None when ``cls.from_state_dict(state)`` builds, else its error on one line."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    try:
        cls.from_state_dict(state)
    except Exception as exc:  # noqa: BLE001 (KeyError, size mismatches, ...: all mean "no")
        text = " ".join(str(exc).split())  # torch's message spans lines: missing keys, sizes
        return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:400]
    return None


def sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the study ------------------------------------------------------------------------------------
def dataset_entry(args) -> tuple[str, dict]:
    """(name, entry) of the dataset: Kodak (``--dataset kodak``) or a folder of images."""
    if args.dataset == "kodak":
        name, entry = "kodak", {"kind": "kodak"}
        if args.kodak_url:
            entry["base_url"] = args.kodak_url
    else:
        folder = Path(args.dataset)
        if not folder.is_dir():
            raise RdflowError(f"--dataset {args.dataset}: not a folder of images (and not "
                              "'kodak', the 24 Kodak images rdflow downloads)")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", folder.resolve().name).lstrip("_.-") or "images"
        entry = {"kind": "local", "path": str(folder.resolve())}
    if args.images:
        entry["images"] = list(args.images)
    return name, entry


def published_curve(architecture: str, metric: str) -> Path:
    """CompressAI's published Kodak results of the architecture (CPU run), shipped."""
    return REFERENCE / "image" / "kodak" / f"compressai-{architecture}_{metric}_cpu.json"


def reference_section(architecture: str, metric: str, dataset: str) -> dict:
    kodak = REFERENCE / "image" / "kodak"
    names = [published_curve(architecture, metric).stem, *OTHER_CURVES]
    curves = [n for n in names if (kodak / f"{n}.json").is_file()]
    return {"compressai_results": str(REFERENCE), "curves": curves, "datasets": [dataset]}


def make_study(args, dataset: tuple[str, dict], pairs: list[tuple[int, Path]]) -> dict:
    """The study file's content: one dataset, the checkpoints' codec and the JPEG anchor."""
    ds, entry = dataset
    codec = {"kind": "learned", "architecture": args.architecture, "metric": args.metric,
             "weights": "checkpoint", "qualities": [q for q, _ in pairs],
             "checkpoint": [str(p) for _, p in pairs],  # one file per quality, in that order
             "checkpoint_sha256": [sha256_of(p) for _, p in pairs]}  # what was evaluated
    study = {"device": args.device, "seed": 0, "metrics": ["psnr_rgb", "ms_ssim"],
             "datasets": {ds: entry},
             "codecs": {args.name: codec, ANCHOR: {"kind": "jpeg", "qualities": args.anchor_qualities}},
             "bd_rate": {"anchor": ANCHOR, "metrics": ["psnr_rgb", "ms_ssim_db"]},
             "vmaf": {"enabled": False}, "export": {"compressai_json": True}}
    if args.reference:
        study["reference"] = reference_section(args.architecture, args.metric, ds)
    return study


def validate(study: dict) -> None:
    """The schema's checks (a copy is validated: defaults are not written into the file); the
    stages' own checks run when snakemake starts."""
    import copy

    from .config import validate as validate_config

    validate_config(copy.deepcopy(study))


def targets(dataset: str, codecs: list[str]) -> list[str]:
    """What the run makes: the tidy CSV and summary, the RD figures, one CompressAI JSON per
    codec, the BD-rate table and the environment record."""
    from . import metrics as M

    out = [paths.IMAGE_RD.format(dataset=dataset), paths.IMAGE_RD_SUMMARY.format(dataset=dataset)]
    for m in ("psnr_rgb", "ms_ssim"):
        out += paths.figure_files(paths.IMAGE_RD_FIGURE, dataset=dataset, metric=M.get(m).curve_column)
    out += [paths.COMPRESSAI_JSON.format(dataset=dataset, codec=c) for c in codecs]
    return out + [paths.BD_CSV, paths.ENV_CSV]


def snakemake_command(workdir: Path, study: Path, cores: str, want: list[str], extra: list[str]):
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "snakemake"]
    return cmd + ["-s", str(paths.REPO / "Snakefile"), "-d", str(workdir), "--configfile",
                  str(study), "--profile", str(paths.REPO / "profiles" / "default"),
                  "--cores", str(cores), *want, *extra]


def write_study(path: Path, study: dict, argv: list[str], cmd: list[str]) -> None:
    import shlex

    import yaml

    from .io import write_bytes

    head = (f"# written by: rdflow-eval {shlex.join(argv)}\n# run again with:\n#   "
            f"{shlex.join(cmd)}\n")
    write_bytes(path, (head + yaml.safe_dump(study, sort_keys=False)).encode())


# -- the command ----------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rdflow-eval", description="Evaluate checkpoints of one CompressAI architecture on "
        "Kodak (or a folder of images) with rdflow, against JPEG and CompressAI's published curves; "
        "writes CompressAI's results JSON. Arguments after -- go to snakemake.")
    p.add_argument("architecture", help="CompressAI zoo architecture, e.g. bmshj2018-hyperprior")
    p.add_argument("checkpoints", nargs="+", help="checkpoint files, or folders holding them")
    p.add_argument("--dataset", default="kodak", help="kodak (default) or a folder of images")
    p.add_argument("--images", nargs="+", help="only these image ids (file stems, e.g. kodim01)")
    p.add_argument("--kodak-url", help="base URL (http, https, file) of the kodimNN.png files")
    p.add_argument("--metric", default="mse", choices=["mse", "ms-ssim"],
                   help="what the checkpoints were trained for: picks the published curve")
    p.add_argument("--name", help="codec name: " + paths.COMPRESSAI_JSON.format(
        dataset="<dataset>", codec="<name>") + " (default <architecture>-<metric>)")
    p.add_argument("-o", "--out", help="folder for study.yaml and the results (default "
                   + paths.EVAL_DIR.format(name="<name>") + ")")
    p.add_argument("--cores", default="all", help="snakemake --cores (default all)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--anchor-qualities", default=",".join(map(str, ANCHOR_QUALITIES)),
                   type=lambda s: [int(v) for v in s.split(",") if v.strip()],
                   help="JPEG qualities of the anchor, comma-separated")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="no published curves in the figures (they are Kodak's 24-image means)")
    p.add_argument("--no-run", action="store_true", help="write study.yaml, print the command")
    return p


def prepare(args, argv: list[str], extra: list[str]) -> tuple[list[str], Path, str]:
    """Check the input, write the study; returns (snakemake command, working dir, dataset)."""
    from .codecs.learned import ARCH_QUALITIES

    if args.architecture not in ARCH_QUALITIES:
        raise RdflowError(f"unknown architecture {args.architecture!r}; rdflow codes "
                          f"{', '.join(sorted(ARCH_QUALITIES))}")
    args.name = args.name or f"{args.architecture}-{args.metric}"
    if not NAME.match(args.name) or args.name == ANCHOR:
        raise RdflowError(f"--name {args.name!r}: use letters, digits, '_', '.', '-' (not "
                          f"{ANCHOR!r}, the anchor's name)")
    dataset = dataset_entry(args)
    pairs, note = assign_qualities(find_checkpoints(args.checkpoints), *ARCH_QUALITIES[args.architecture])
    if note:
        print(f"rdflow-eval: {note}", file=sys.stderr)
    check_checkpoints(args.architecture, pairs)
    study = make_study(args, dataset, pairs)
    validate(study)
    workdir = Path(args.out or paths.EVAL_DIR.format(name=args.name)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    want = targets(dataset[0], [args.name, ANCHOR])
    cmd = snakemake_command(workdir, workdir / "study.yaml", args.cores, want, extra)
    write_study(workdir / "study.yaml", study, argv, cmd)
    return cmd, workdir, dataset[0]


def report(args, workdir: Path, dataset: str) -> None:
    """Where the results are, and the plot command that puts them beside the published curve."""
    mine = workdir / paths.COMPRESSAI_JSON.format(dataset=dataset, codec=args.name)
    figure = workdir / paths.IMAGE_RD_FIGURE.format(dataset=dataset, metric="psnr_rgb")
    lines = [f"rdflow-eval: done ({workdir})",
             f"  CompressAI JSON : {mine}",
             f"  the anchor's    : {mine.with_name(ANCHOR + '.json')}",
             f"  tidy CSV        : {workdir / paths.IMAGE_RD.format(dataset=dataset)}",
             f"  summary         : {workdir / paths.IMAGE_RD_SUMMARY.format(dataset=dataset)}",
             f"  BD-rate table   : {workdir / paths.BD_CSV}  (against {ANCHOR})",
             f"  figures         : {figure}.png (and ms_ssim_db, .pdf)"]
    ref = published_curve(args.architecture, args.metric)
    if ref.is_file():
        lines.append(f"  beside the published curve: python -m compressai.utils.plot -f {mine} "
                     f"{ref} -o rd.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = parser().parse_args(ours)
    try:
        cmd, workdir, dataset = prepare(args, ours, extra)
    except RdflowError as exc:
        print(f"rdflow-eval: {exc}", file=sys.stderr)
        return 2
    import shlex

    print(f"rdflow-eval: study {workdir / 'study.yaml'}\n  {shlex.join(cmd)}", file=sys.stderr)
    if args.no_run:
        return 0
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        print(f"rdflow-eval: snakemake failed (exit {rc}); its logs are under {workdir / 'logs'}",
              file=sys.stderr)
        return rc
    report(args, workdir, dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
