"""Training a CompressAI architecture on a folder of images, one model per quality (the train
stage's library; its config checks and targets are :mod:`rdflow.stages.train`).

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

from . import RdflowError, paths
from .io import atomic_path, write_json
from .weights import load_torch_file

log = logging.getLogger("rdflow.train")

#: CompressAI's own training λ for the MSE zoo models, quality 1..8 (compressai docs, zoo)
ZOO_LAMBDAS = [0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800]


def model_path(name: str, quality: int | str) -> str:
    return paths.TRAINED_MODEL.format(name=name, quality=quality)


def info_path(name: str, quality: int | str) -> str:
    return paths.TRAINED_INFO.format(name=name, quality=quality)


def state_path(name: str, quality: int | str) -> str:
    return paths.TRAINED_STATE.format(name=name, quality=quality)


def recipe_folder(name: str, t: dict) -> str:
    """The folder a recipe's images are read from (Kodak ids: downloaded into resources/train)."""
    return f"{paths.TRAIN_IMAGES}/{name}" if t.get("kodak") else t["images"]


def training_images(t: dict, *, where: str, folder: str | None = None) -> list[Path]:
    """The image files of a recipe (folder, minus ``exclude``), checked to exist."""
    from .sources.datasets import list_local_images

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
        from .sources.datasets import read_image

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


def _new_acc() -> dict:
    return {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}


# -- one quality ------------------------------------------------------------------------------
class _Trainer:
    """The training of one quality of a recipe: model, optimisers, progress (resumable)."""

    def __init__(self, t: dict, name: str, quality: int, *, state: str | None,
                 init_model: str | None, device: str, threads: int | None):
        import torch

        from .codecs.learned import resolve_device

        self.t, self.quality, self.init_model = t, quality, init_model
        self.where = where = f"train.{name}"
        qualities = list(t["qualities"])
        self.lmbda = float(t["lambdas"][qualities.index(int(quality))])
        self.steps = int(t["finetune_steps"] or t["steps"]) if init_model else int(t["steps"])
        threads = t.get("threads") or threads
        if threads:
            torch.set_num_threads(int(threads))
        self.dev = resolve_device(device)
        self.files = training_images(t, where=where, folder=recipe_folder(name, t))
        self.sampler = CropSampler(self.files, int(t["crop"]), where=where)
        self.state = state or state_path(name, quality)
        torch.manual_seed(int(t["seed"]) * 1000 + int(quality))
        self.net = build_model(t, quality).to(self.dev)
        self.opt, self.aux_opt = _optimizers(self.net, float(t["lr"]), float(t["aux_lr"]))
        self.start, self.curve, self.elapsed, self.acc = 0, [], 0.0, _new_acc()
        self.skipped = 0
        self.aux = torch.zeros(())
        self.base_lr = float(t.get("finetune_lr") or t["lr"]) if init_model else float(t["lr"])

    def load(self) -> None:
        """Resume from the state file, else start from ``init_model`` when given."""
        import torch

        where, quality, state = self.where, self.quality, self.state
        if Path(state).is_file():
            ck = load_torch_file(state, what="training checkpoint",
                                 fix=f"Delete {state} to train {where} q{quality} from the start")
            try:
                self.net.load_state_dict(ck["model"])
                self.opt.load_state_dict(ck["optimizer"])
                self.aux_opt.load_state_dict(ck["aux_optimizer"])
                self.start, self.curve = int(ck["step"]), list(ck["curve"])
                self.elapsed = float(ck["elapsed_s"])
                torch.set_rng_state(ck["rng"])  # the training noise continues where it stopped
                self.acc = dict(ck["acc"])      # the loss curve's running sums too
            except (KeyError, RuntimeError, ValueError, TypeError) as exc:
                raise RdflowError(f"training checkpoint {state} does not fit {where} q{quality} "
                                  f"({str(exc).splitlines()[0][:200]}); delete it to start again") from None
            log.info("%s q%s: resuming at step %d of %d from %s", where, quality, self.start,
                     self.steps, state)
        elif self.init_model:
            init = self.init_model
            sd = load_torch_file(init, what="initial model",
                                 fix=f"Delete it to train it again ({where}.init_from)")
            try:
                self.net.load_state_dict(sd)
            except (KeyError, RuntimeError) as exc:
                raise RdflowError(f"{init} does not fit {where} q{quality} "
                                  f"({str(exc).splitlines()[0][:200]}); delete it to train it again") from None
            log.info("%s q%s: initialised from %s", where, quality, init)

    def step(self, criterion, step: int, decay_at: int) -> bool:
        """One optimisation step; False when its loss is not finite (the step is skipped)."""
        import torch

        t = self.t
        for g in self.opt.param_groups:  # set every step: a resumed run gets the same schedule
            g["lr"] = self.base_lr * (0.1 if step >= decay_at else 1.0)
        x = torch.from_numpy(self.sampler.batch(int(t["seed"]), step, int(t["batch_size"])))
        x = x.permute(0, 3, 1, 2).to(self.dev, torch.float32).div_(255.0)
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        out = criterion(self.net(x), x)
        loss = out["loss"].item()
        if not math.isfinite(loss):  # one bad batch is skipped; a diverged model is an error
            self.skipped += 1
            log.warning("%s q%s: loss %s at step %d, step skipped", self.where, self.quality, loss, step)
            if self.skipped > 20:
                raise RdflowError(f"{self.where} q{self.quality}: the loss is {loss} at step {step} "
                                  f"(over 20 non-finite steps); lower {self.where}.lr (finetune_lr) "
                                  "or check the images")
            return False
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        self.aux = self.net.aux_loss()
        self.aux.backward()
        self.aux_opt.step()
        self.acc["loss"] += loss
        self.acc["bpp"] += out["bpp_loss"].item()
        self.acc["mse"] += out["mse_loss"].item()
        self.acc["n"] += 1
        return True

    def record(self, done: int, t0: float) -> None:
        """A row of the loss curve: the means since the last one."""
        n = self.acc.pop("n")
        row = {"step": done, **{k: v / n for k, v in self.acc.items()}, "aux": self.aux.item()}
        row["psnr"] = 10 * math.log10(1.0 / max(row["mse"], 1e-12))
        self.curve.append(row)
        self.acc = _new_acc()
        rate = (time.perf_counter() - t0) / (done - self.start)
        log.info("%s q%s step %d/%d loss %.4f bpp %.3f psnr %.2f dB (%.2f s/step, ETA %.0f s)",
                 self.where, self.quality, done, self.steps, row["loss"], row["bpp"], row["psnr"],
                 rate, rate * (self.steps - done))

    def checkpoint(self, done: int, t0: float) -> None:
        import torch

        _save_torch({"model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                     "aux_optimizer": self.aux_opt.state_dict(), "step": done, "curve": self.curve,
                     "rng": torch.get_rng_state(), "acc": dict(self.acc),
                     "elapsed_s": self.elapsed + time.perf_counter() - t0}, self.state)

    def run(self) -> None:
        from compressai.losses import RateDistortionLoss

        t, steps = self.t, self.steps
        criterion = RateDistortionLoss(lmbda=self.lmbda)
        decay_at = int(steps * float(t["lr_decay_at"]))
        every = int(t["checkpoint_every"])
        self.net.train()
        t0 = time.perf_counter()
        for step in range(self.start, steps):
            if not self.step(criterion, step, decay_at):
                continue
            done = step + 1
            if done % int(t["log_every"]) == 0 or done == steps:
                self.record(done, t0)
            if done % every == 0 and done < steps:
                self.checkpoint(done, t0)
        self.elapsed += time.perf_counter() - t0

    def finish(self, name: str, out_model: str, out_info: str) -> dict:
        """Write the final model and its info JSON; remove the state file."""
        net = self.net
        net.eval()
        net.update(force=True)
        sd = {k: v.detach().to("cpu") for k, v in net.state_dict().items()}
        if self.t.get("compact"):
            sd = compact_state_dict(sd)
        _save_torch(sd, out_model)
        info = {"name": name, "quality": int(self.quality), "lambda": self.lmbda, "recipe": self.t,
                "params": sum(p.numel() for p in net.parameters()), "device": self.dev,
                "train_images": [p.name for p in self.files],
                "steps": self.steps, "lr": self.base_lr, "skipped_steps": self.skipped,
                "train_s": round(self.elapsed, 1), "init_model": self.init_model, "curve": self.curve}
        write_json(out_info, info)
        Path(self.state).unlink(missing_ok=True)
        return info


def train_quality(t: dict, name: str, quality: int, *, out_model: str, out_info: str,
                  state: str | None = None, init_model: str | None = None,
                  device: str = "auto", threads: int | None = None) -> dict:
    """Train (or resume) the model of quality ``quality`` of recipe ``t`` (``train.<name>``);
    write the model and its info JSON atomically."""
    trainer = _Trainer(t, name, quality, state=state, init_model=init_model, device=device,
                       threads=threads)
    trainer.load()
    trainer.run()
    return trainer.finish(name, out_model, out_info)
