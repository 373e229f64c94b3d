"""Your own learned codec: any CompressAI-style model class, named by dotted path in the study.

A ``codecs.<name>`` entry of ``kind: compressai_model`` names a class (``model:
"mypkg.models:MyNet"``, found on ``sys.path`` or in the ``python_path`` folder) and one
checkpoint per quality (``checkpoint``: a template with ``{quality}`` or a list, local paths or
URLs, each with an optional ``checkpoint_sha256``). The model is built with ``args`` (a list or a
mapping of constructor arguments) and ``load_state_dict`` (strict), or without ``args`` by the
class's ``from_state_dict``; then ``update(force=True)``. It codes through the same path as the
zoo models (:class:`rdflow.codecs.learned.Learned`: pad to 64, ``compress``, the bitstream
file, read back, ``decompress``, crop, 8-bit), and the complexity stage counts its parameters,
size and MACs from ``codec.net`` as for the zoo models.

Safety: checkpoints are read with ``torch.load(weights_only=True)`` (tensors only, no code runs
from the file); the code that runs is the module the study names, as with ``plugins``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

from .. import RdflowError
from .base import register
from .learned import Learned, _check_checkpoint_sha256, _unwrap_state_dict

#: a model class must have these methods (CompressAI's CompressionModel API)
REQUIRED_METHODS = ("compress", "decompress")


def _split(model, where: str) -> tuple[str, str]:
    if not isinstance(model, str) or model.count(":") != 1 or not all(model.split(":")):
        raise RdflowError(f"{where}.model: {model!r} is not 'module:Class' (e.g. "
                          "model: \"mypkg.models:MyNet\", the module importable from python_path "
                          "or the environment)")
    mod, cls = model.split(":")
    return mod, cls


def add_python_path(folder: str | None, where: str) -> None:
    """Put ``folder`` (relative to the working directory) first on ``sys.path``."""
    if not folder:
        return
    p = Path(folder).resolve()
    if not p.is_dir():
        raise RdflowError(f"{where}.python_path: {folder} is not a folder (working directory "
                          f"{Path.cwd()}); give the folder that holds your package")
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def check_model_name(model: str, python_path: str | None, where: str) -> None:
    """Config check without running the module: it can be found, and its source defines the
    class at top level (assignment or import counts)."""
    mod, cls = _split(model, where)
    add_python_path(python_path, where)
    try:
        spec = importlib.util.find_spec(mod)
    except (ImportError, ValueError) as exc:
        spec, why = None, str(exc)
    else:
        why = "no such module"
    if spec is None:
        raise RdflowError(f"{where}.model: cannot find module {mod!r} ({why}); search path starts "
                          f"{sys.path[:3]}. Set {where}.python_path to the folder holding it, or "
                          "install your package")
    origin = spec.origin
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return  # compiled or namespace module: checked when the job imports it
    tree = ast.parse(Path(origin).read_text(encoding="utf-8", errors="replace"), origin)
    if cls not in _top_level_names(tree):
        raise RdflowError(f"{where}.model: module {mod} ({origin}) defines no {cls!r} at top level; "
                          f"it defines: {', '.join(sorted(_classes(tree))) or 'no classes'}")


def _top_level_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _classes(tree: ast.Module) -> list[str]:
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def import_model_class(model: str, python_path: str | None, where: str):
    """The class ``model`` names, checked to be a torch module with compress/decompress."""
    import torch

    mod, name = _split(model, where)
    add_python_path(python_path, where)
    try:
        module = importlib.import_module(mod)
    except Exception as exc:  # the user's module: any error it raises is reported as such
        raise RdflowError(f"{where}.model: importing {mod} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, name, None)
    if cls is None:
        have = sorted(k for k, v in vars(module).items() if isinstance(v, type))
        raise RdflowError(f"{where}.model: module {mod} has no {name!r}; its classes: "
                          f"{', '.join(have) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise RdflowError(f"{where}.model: {model} is not a torch.nn.Module class, so it is not a "
                          "CompressAI model (subclass compressai.models.CompressionModel)")
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise RdflowError(f"{where}.model: {model} has no {' or '.join(missing)} method: a CompressAI "
                          "model codes with compress(x) -> {strings, shape} and decompress(strings, "
                          "shape) -> {x_hat} (e.g. subclass compressai.models.ScaleHyperprior)")
    return cls


def build_model(cls, state: dict, args, *, model: str, path: str, where: str):
    """``cls(*args)`` / ``cls(**args)`` + strict ``load_state_dict``, or ``cls.from_state_dict``."""
    try:
        if args is None:
            if not callable(getattr(cls, "from_state_dict", None)):
                raise RdflowError(f"{where}.args: {model} has no from_state_dict classmethod: give "
                                  "its constructor arguments in args (a list or a mapping)")
            net = cls.from_state_dict(state)
        else:
            net = cls(**args) if isinstance(args, dict) else cls(*args)
            net.load_state_dict(state)
    except RdflowError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:400]
        raise RdflowError(f"{where}.checkpoint: {path} does not fit {model}"
                          f"{'' if args is None else f' built with args {args}'}: "
                          f"{type(exc).__name__}: {text}. Is it a checkpoint of another class or "
                          "size?") from None
    if callable(getattr(net, "update", None)):
        net.update(force=True)
    return net


@register
class CompressAIModel(Learned):
    """A model class of your own (CompressAI API), one checkpoint per quality."""

    kind = "compressai_model"
    #: the quality is the index of your checkpoint ladder, any integer
    quality_range = (-(2**31), 2**31 - 1)
    defaults: dict = {}
    entry_keys = frozenset({"model", "python_path", "args", "checkpoint", "checkpoint_sha256"})

    @classmethod
    def trained_model(cls, entry: dict) -> str | None:
        return None

    @classmethod
    def config_defaults(cls, entry: dict) -> dict:
        return {}

    @classmethod
    def check_entry(cls, config: dict, name: str, c: dict, *, where: str):
        """The class can be found (its module is not run here), one checkpoint per quality
        (local files exist), digests one per quality."""
        from ..weights import check_checkpoints

        super(Learned, cls).check_entry(config, name, c, where=where)
        if "model" not in c:
            raise RdflowError(f"{where}.model is missing: name your class, e.g. model: "
                              "\"mypkg.models:MyNet\" (with python_path: the folder holding mypkg)")
        check_model_name(c["model"], c.get("python_path"), where)
        if not c.get("checkpoint"):
            raise RdflowError(f"{where}.checkpoint is missing: give one checkpoint per quality, "
                              "a template such as ckpt/mynet-q{quality}.pth.tar or a list")
        args = c.get("args")
        if args is not None and not isinstance(args, (list, dict)):
            raise RdflowError(f"{where}.args must be a list (positional) or a mapping (keyword "
                              f"arguments), not {type(args).__name__}")
        check_checkpoints(c, where)
        _check_checkpoint_sha256({**c, "weights": "checkpoint"}, where)
        return None

    @classmethod
    def weights_file(cls, config: dict, name: str, entry: dict, quality: int) -> str | None:
        from ..weights import learned_weights_file

        return learned_weights_file(config, name, {**entry, "weights": "checkpoint"}, quality)

    @classmethod
    def downloads(cls, config: dict, name: str, entry: dict) -> list[str]:
        return super().downloads(config, name, {**entry, "weights": "checkpoint"})

    def load_net(self, spec):
        from ..download import verify
        from ..runtime import import_stack
        from ..weights import load_torch_file

        import_stack()
        o, where = spec.options, f"codecs.{spec.name}"
        self.architecture, self.weights = o["model"], "checkpoint"
        cls = import_model_class(o["model"], o.get("python_path"), where)
        path = o.get("weights_path")
        if not path or not Path(path).is_file():
            raise RdflowError(f"{where}.checkpoint: the file of quality {spec.quality}, {path}, "
                              "does not exist")
        verify(path, o.get("weights_sha256"), what=f"{where}.checkpoint of quality {spec.quality}")
        state = _unwrap_state_dict(load_torch_file(
            path, what=f"{where}.checkpoint of quality {spec.quality}",
            fix="Save it with torch.save(model.state_dict(), path)"))
        net = build_model(cls, state, o.get("args"), model=o["model"], path=path, where=where)
        return net.eval().to(self.device)

    def describe(self) -> dict:
        import compressai

        return {
            "encoder": f"compressai {compressai.__version__} {self.architecture}",
            "architecture": self.architecture,
            "weights": f"checkpoint({Path(self.spec.options.get('weights_path', '')).name})",
            "device": self.device,
        }
