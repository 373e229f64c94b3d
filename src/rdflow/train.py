"""The train stage: train a CompressAI architecture on a folder of images, one model per quality.

``train.<name>`` in the config is one recipe: an architecture (a zoo name, optionally with a
reduced ``N``/``M``), the training images, and a λ ladder (one λ per quality). Each quality is a
job that writes, atomically:

- ``resources/trained/<name>/q<quality>.state.pt`` every ``checkpoint_every`` steps: model,
  optimisers and step (the job resumes from it after a kill; deleted once the model is done);
- ``resources/trained/<name>/q<quality>.pth.tar``: the final state dict after
  ``update(force=True)`` (what ``weights: trained`` codes with);
- ``resources/trained/<name>/q<quality>.json``: the recipe, the loss curve and the run's facts.

Batches are drawn from a generator seeded with (seed, step), so a resumed run sees the same
batches as an uninterrupted one. Every file is loaded with ``weights_only=True``: nothing in a
checkpoint can run code.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from . import RdflowError
from .io import atomic_path, write_json

log = logging.getLogger(__name__)

TRAINED_DIR = "resources/trained"
#: CompressAI's own training λ for the MSE zoo models, quality 1..8 (compressai docs, zoo)
ZOO_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800]


def model_path(name: str, quality: int | str) -> str:
    return f"{TRAINED_DIR}/{name}/q{quality}.pth.tar"


def info_path(name: str, quality: int | str) -> str:
    return f"{TRAINED_DIR}/{name}/q{quality}.json"


def state_path(name: str, quality: int | str) -> str:
    return f"{TRAINED_DIR}/{name}/q{quality}.state.pt"


# -- recipes and config checks (no torch) ------------------------------------------------------
QUICKSTART = "quickstart"


def recipe_folder(name: str, t: dict) -> str:
    """The folder a recipe's images are read from (Kodak ids: downloaded into resources/train)."""
    from .paths import TRAIN_IMAGES

    return f"{TRAIN_IMAGES}/{name}" if t.get("kodak") else t["images"]


def quickstart_recipe() -> dict:
    """The shipped model's recipe (workflow/resources/models/quickstart/recipe.yaml), with the
    schema's defaults filled in."""
    import yaml
    from snakemake.utils import validate as sm_validate

    from .config import SCHEMA, apply_kind_defaults
    from .paths import MODELS

    with open(MODELS / QUICKSTART / "recipe.yaml") as fh:
        wrapper = {"train": {QUICKSTART: yaml.safe_load(fh)}}
    sm_validate(wrapper, str(SCHEMA), set_default=True)
    apply_kind_defaults(wrapper)
    return wrapper["train"][QUICKSTART]


def recipes(config: dict) -> dict[str, dict]:
    """Every recipe the workflow can train: the config's, and the quickstart model's recipe
    (target ``train_quickstart``) unless the config has its own ``train.quickstart``."""
    out = dict(config.get("train") or {})
    if QUICKSTART not in out:
        out[QUICKSTART] = quickstart_recipe()
    return out


def check(config: dict) -> None:
    """Parse-time checks of every ``train.<name>`` recipe."""
    from .codecs.learned import ARCH_QUALITIES
    from .datasets import KODAK_SHA256

    for name, t in (config.get("train") or {}).items():
        where = f"train.{name}"
        if t["architecture"] not in ARCH_QUALITIES:
            raise RdflowError(f"{where}.architecture: unknown architecture {t['architecture']!r}; "
                              f"known: {', '.join(sorted(ARCH_QUALITIES))}")
        qualities, lambdas = t["qualities"], t["lambdas"]
        if len(qualities) != len(lambdas):
            raise RdflowError(
                f"{where}.lambdas has {len(lambdas)} values but {where}.qualities has "
                f"{len(qualities)}: give one λ per quality (in the same order)")
        init = t.get("init_from")
        if init is not None and init not in qualities:
            raise RdflowError(f"{where}.init_from: quality {init} is not in {where}.qualities {qualities}")
        if bool(t.get("images")) == bool(t.get("kodak")):
            raise RdflowError(f"{where}: give either images (a folder of training images) or kodak "
                              "(Kodak image ids to download), not both and not neither")
        bad = [i for i in t.get("kodak") or [] if i not in KODAK_SHA256]
        if bad:
            raise RdflowError(f"{where}.kodak: {bad} are not Kodak images (kodim01 … kodim24)")
        if t.get("images"):
            training_images(t, where=where, folder=t["images"])


def training_images(t: dict, *, where: str, folder: str | None = None) -> list[Path]:
    """The image files of a recipe (folder, minus ``exclude``), checked to exist."""
    from .datasets import list_local_images

    folder = folder or t["images"]
    images = list_local_images(folder, key=f"{where}.images")
    excluded = set(t.get("exclude") or [])
    files = [Path(p) for stem, p in sorted(images.items()) if stem not in excluded]
    if not files:
        raise RdflowError(f"{where}.images: no PNG/JPEG images left in {folder} "
                          f"(excluded: {sorted(excluded)}); add images or shorten exclude")
    return files


# -- data -------------------------------------------------------------------------------------
class CropSampler:
    """Random crops (with flips) from images held in memory; batch ``k`` depends only on (seed, k)."""

    def __init__(self, files: list[Path], crop: int, *, where: str):
        from .datasets import read_image

        self.images, self.crop = [], crop
        for f in files:
            rgb = read_image(f).rgb
            if min(rgb.shape[:2]) < crop:
                raise RdflowError(
                    f"{where}.images: {f} is {rgb.shape[1]}x{rgb.shape[0]}, smaller than the "
                    f"{crop} px crop; remove it or lower {where}.crop")
            self.images.append(rgb)

    def batch(self, seed: int, step: int, size: int) -> np.ndarray:
        rng = np.random.default_rng([seed, step])
        out = np.empty((size, self.crop, self.crop, 3), np.uint8)
        for i in range(size):
            img = self.images[rng.integers(len(self.images))]
            y = rng.integers(img.shape[0] - self.crop + 1)
            x = rng.integers(img.shape[1] - self.crop + 1)
            patch = img[y:y + self.crop, x:x + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1]
            out[i] = patch
        return out


# -- model ------------------------------------------------------------------------------------
def build_model(t: dict, quality: int):
    """The architecture of a recipe with its (N, M): the zoo's for that quality unless given."""
    from compressai.zoo.image import cfgs, model_architectures

    arch = t["architecture"]
    zoo_q = min(max(int(quality), 1), max(cfgs[arch]))
    args = list(cfgs[arch][zoo_q])
    if t.get("N"):
        args[0] = int(t["N"])
    if t.get("M") and len(args) > 1:
        args[1] = int(t["M"])
    return model_architectures[arch](*args)


def _optimizers(net, lr: float, aux_lr: float):
    import torch

    main = [p for n, p in net.named_parameters() if not n.endswith(".quantiles") and p.requires_grad]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles") and p.requires_grad]
    return torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux, lr=aux_lr)


def load_torch_file(path: str | Path, *, what: str, fix: str):
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RdflowError(f"cannot load {what} {path}: {first[:300]}. {fix}") from None


#: entropy-coder tables that ``update(force=True)`` derives from the weights at load time
DERIVED_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")


def compact_state_dict(sd: dict) -> dict:
    """Float16 weights and empty derived tables: about 3x smaller files (a shipped model).

    Loading copies the weights into float32 parameters; the entropy coder's tables are then
    rebuilt by ``update(force=True)``, as for every checkpoint rdflow loads.
    """
    import torch

    out = {}
    for k, v in sd.items():
        if k.rsplit(".", 1)[-1] in DERIVED_BUFFERS:
            out[k] = torch.empty(0, dtype=v.dtype)
        elif v.is_floating_point():
            out[k] = v.half()
        else:
            out[k] = v
    return out


def _save_torch(obj, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


# -- one quality ------------------------------------------------------------------------------
def train_quality(t: dict, name: str, quality: int, *, out_model: str, out_info: str,
                  state: str | None = None, init_model: str | None = None,
                  device: str = "auto", threads: int | None = None) -> dict:
    """Train (or resume) the model of quality ``quality`` of recipe ``t`` (``train.<name>``);
    write the model and its info JSON atomically."""
    import torch
    from compressai.losses import RateDistortionLoss

    from .codecs.learned import resolve_device

    where = f"train.{name}"
    qualities = list(t["qualities"])
    lmbda = float(t["lambdas"][qualities.index(int(quality))])
    steps = int(t["finetune_steps"] or t["steps"]) if init_model else int(t["steps"])
    every = int(t["checkpoint_every"])
    threads = t.get("threads") or threads
    if threads:
        torch.set_num_threads(int(threads))
    dev = resolve_device(device)
    files = training_images(t, where=where, folder=recipe_folder(name, t))
    sampler = CropSampler(files, int(t["crop"]), where=where)
    state = state or state_path(name, quality)

    torch.manual_seed(int(t["seed"]) * 1000 + int(quality))
    net = build_model(t, quality).to(dev)
    opt, aux_opt = _optimizers(net, float(t["lr"]), float(t["aux_lr"]))
    start, curve, elapsed = 0, [], 0.0
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    if Path(state).is_file():
        ck = load_torch_file(state, what="training checkpoint",
                             fix=f"Delete {state} to train {where} q{quality} from the start")
        try:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            aux_opt.load_state_dict(ck["aux_optimizer"])
            start, curve, elapsed = int(ck["step"]), list(ck["curve"]), float(ck["elapsed_s"])
            torch.set_rng_state(ck["rng"])  # the training noise continues where it stopped
            acc = dict(ck["acc"])           # the loss curve's running sums too
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise RdflowError(f"training checkpoint {state} does not fit {where} q{quality} "
                              f"({str(exc).splitlines()[0][:200]}); delete it to start again") from None
        log.info("%s q%s: resuming at step %d of %d from %s", where, quality, start, steps, state)
    elif init_model:
        sd = load_torch_file(init_model, what="initial model",
                             fix=f"Delete it to train it again ({where}.init_from)")
        try:
            net.load_state_dict(sd)
        except (KeyError, RuntimeError) as exc:
            raise RdflowError(f"{init_model} does not fit {where} q{quality} "
                              f"({str(exc).splitlines()[0][:200]}); delete it to train it again") from None
        log.info("%s q%s: initialised from %s", where, quality, init_model)

    criterion = RateDistortionLoss(lmbda=lmbda)
    decay_at = int(steps * float(t["lr_decay_at"]))
    base_lr = float(t.get("finetune_lr") or t["lr"]) if init_model else float(t["lr"])
    net.train()
    t0 = time.perf_counter()
    skipped = 0
    aux = torch.zeros(())
    for step in range(start, steps):
        for g in opt.param_groups:  # set every step: a resumed run gets the same schedule
            g["lr"] = base_lr * (0.1 if step >= decay_at else 1.0)
        x = torch.from_numpy(sampler.batch(int(t["seed"]), step, int(t["batch_size"])))
        x = x.permute(0, 3, 1, 2).to(dev, torch.float32).div_(255.0)
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        out = criterion(net(x), x)
        loss = out["loss"].item()
        if not math.isfinite(loss):  # one bad batch is skipped; a diverged model is an error
            skipped += 1
            log.warning("%s q%s: loss %s at step %d, step skipped", where, quality, loss, step)
            if skipped > 20:
                raise RdflowError(f"{where} q{quality}: the loss is {loss} at step {step} "
                                  f"(over 20 non-finite steps); lower {where}.lr (finetune_lr) or check the images")
            continue
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        aux = net.aux_loss()
        aux.backward()
        aux_opt.step()
        acc["loss"] += loss
        acc["bpp"] += out["bpp_loss"].item()
        acc["mse"] += out["mse_loss"].item()
        acc["n"] += 1
        done = step + 1
        if done % int(t["log_every"]) == 0 or done == steps:
            n = acc.pop("n")
            row = {"step": done, **{k: v / n for k, v in acc.items()}, "aux": aux.item()}
            row["psnr"] = 10 * math.log10(1.0 / max(row["mse"], 1e-12))
            curve.append(row)
            acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
            rate = (time.perf_counter() - t0) / (done - start)
            log.info("%s q%s step %d/%d loss %.4f bpp %.3f psnr %.2f dB (%.2f s/step, ETA %.0f s)",
                     where, quality, done, steps, row["loss"], row["bpp"], row["psnr"], rate,
                     rate * (steps - done))
        if done % every == 0 and done < steps:
            _save_torch({"model": net.state_dict(), "optimizer": opt.state_dict(),
                         "aux_optimizer": aux_opt.state_dict(), "step": done, "curve": curve,
                         "rng": torch.get_rng_state(), "acc": dict(acc),
                         "elapsed_s": elapsed + time.perf_counter() - t0}, state)
    elapsed += time.perf_counter() - t0
    net.eval()
    net.update(force=True)
    sd = {k: v.detach().to("cpu") for k, v in net.state_dict().items()}
    if t.get("compact"):
        sd = compact_state_dict(sd)
    _save_torch(sd, out_model)
    info = {"name": name, "quality": int(quality), "lambda": lmbda, "recipe": t,
            "params": sum(p.numel() for p in net.parameters()), "device": dev,
            "train_images": [p.name for p in files],
            "steps": steps, "lr": base_lr, "skipped_steps": skipped, "train_s": round(elapsed, 1),
            "init_model": init_model, "curve": curve}
    write_json(out_info, info)
    Path(state).unlink(missing_ok=True)
    return info
