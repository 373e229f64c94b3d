"""``kind: command``: an external image codec run as two argument lists, one process each.

A study names the encoder and decoder commands (YAML lists, never a shell string) with
placeholders; rdflow writes the picture in ``format``, runs ``encode``, takes the file the
command wrote at ``{output}`` as the bitstream (every byte counted in bpp, ``header_bytes`` 0),
then writes those bytes to a file, runs ``decode`` and reads its ``{output}`` in
``recon_format`` (default: ``format``)::

    codecs:
      mycodec:
        kind: command
        qualities: [22, 27, 32, 37]
        format: yuv444p                    # png, ppm, yuv420p, yuv444p, y4m (command_io)
        encode: [EncoderApp, -c, cfg/encoder_intra_vtm.cfg, -i, "{input}", -b, "{output}",
                 -q, "{quality}", -wdt, "{width}", -hgt, "{height}", ...]
        decode: [DecoderApp, -b, "{input}", -o, "{output}", -d, "8"]

Placeholders: ``{input}``, ``{output}`` (file paths in a fresh temporary folder per call),
``{width}``, ``{height}`` (of the picture in the encoder's input: 4:2:0 formats pad odd sizes
to even), ``{quality}`` (the ladder value, passed as is: quality_range is wide because the
codec's scale is its own), ``{threads}`` (the entry's ``threads``, default 1). A literal brace
is written ``{{`` / ``}}``. The commands run in the Snakemake working directory with stdin
closed, under ``timeout`` seconds each (default 600; the whole process group is killed).

The decoder is given the size of the picture the same codec object encoded: the (height,
width) is kept per bitstream (by its SHA-256) in the process, so jobs running in threads may
share one cached codec. ``enc_s``/``dec_s`` are the wall time of each command, process start-up
and file writing/reading of the picture included.

``version`` (an argument list; default ``[<encode[0]>, --version]``): the first line of its
output (stdout, else stderr) is the ``encoder`` column of every row. When the default exits
non-zero the row says ``unknown`` and a warning is logged; a configured one may exit non-zero
(VTM's ``EncoderApp --help`` exits 1 after printing its version banner) but must print.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shlex
import shutil
import string
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import RdflowError
from . import command_io as cio
from .base import Codec, register

log = logging.getLogger("rdflow.command")

PLACEHOLDERS = ("input", "output", "width", "height", "quality", "threads")
DEFAULT_TIMEOUT = 600.0
VERSION_TIMEOUT = 60.0
TAIL = 1500
#: bitstreams whose picture size is remembered (per codec object) for their decode
KEEP_SIZES = 512


def cmdline(argv) -> str:
    """``argv`` as one line a shell would split back into it (placeholders left unquoted)."""
    return " ".join(a if re.fullmatch(r"[\w@%+=:,./{}-]+", a) else shlex.quote(a)
                    for a in map(str, argv))


# -- config -------------------------------------------------------------------------------
def _argv(entry: dict, key: str, where: str, *, required: bool = True) -> list[str] | None:
    """``entry[key]`` as a list of strings, or RdflowError naming the key."""
    value = entry.get(key)
    if value is None:
        if required:
            raise RdflowError(f"{where}.{key} is missing: kind command needs an {key} argument "
                              f"list, e.g. {key}: [mycodec, --in, \"{{input}}\", --out, \"{{output}}\"]")
        return None
    if isinstance(value, str):
        raise RdflowError(f"{where}.{key} is a string ({value[:80]!r}); write the command as a "
                          f"list of arguments, e.g. {key}: {value.split()[:4] or ['prog']} "
                          "... (no shell runs it, so quoting and pipes do not apply)")
    if not isinstance(value, list) or not value:
        raise RdflowError(f"{where}.{key} must be a non-empty list of strings (one per argument)")
    for i, a in enumerate(value):
        if isinstance(a, dict):
            raise RdflowError(f"{where}.{key}[{i}] is a mapping ({a}): quote the placeholder, "
                              f"\"{{{next(iter(a), 'input')}}}\" (YAML reads a bare {{...}} as a mapping)")
        if not isinstance(a, (str, int, float)) or isinstance(a, bool):
            raise RdflowError(f"{where}.{key}[{i}] = {a!r}: give a string")
    return [str(a) for a in value]


def _placeholders(argv: list[str], key: str, where: str) -> set[str]:
    """The placeholders used in ``argv``; unknown ones (or bad braces) are refused."""
    used = set()
    for i, arg in enumerate(argv):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as exc:
            raise RdflowError(f"{where}.{key}[{i}] = {arg!r}: {exc}; write a literal brace as "
                              "{{ or }}") from None
        for f in fields:
            if f not in PLACEHOLDERS:
                raise RdflowError(f"{where}.{key}[{i}] = {arg!r}: unknown placeholder {{{f}}}; "
                                  f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        used |= set(fields)
    return used


def _require_binary(argv: list[str], key: str, where: str) -> None:
    exe = argv[0]
    if os.sep in exe or (os.altsep and os.altsep in exe):
        if not Path(exe).is_file():
            raise RdflowError(f"{where}.{key}[0]: {exe} does not exist; give the path of the "
                              "codec's executable (relative paths start at the working directory)")
        if not os.access(exe, os.X_OK):
            raise RdflowError(f"{where}.{key}[0]: {exe} is not executable (chmod +x {exe})")
    elif shutil.which(exe) is None:
        raise RdflowError(f"{where}.{key}[0]: {exe!r} is not found on PATH; give its full path "
                          f"(e.g. /opt/{exe}/bin/{exe}) or add its folder to PATH")


def settings(entry: dict, where: str) -> dict:
    """The checked settings of a ``kind: command`` entry (RdflowError naming the key)."""
    s = {"encode": _argv(entry, "encode", where), "decode": _argv(entry, "decode", where),
         "version": _argv(entry, "version", where, required=False)}
    for key in ("encode", "decode"):
        used = _placeholders(s[key], key, where)
        missing = [p for p in ("input", "output") if p not in used]
        if missing:
            raise RdflowError(f"{where}.{key} has no {{{missing[0]}}} placeholder: the command "
                              f"must read {{input}} and write {{output}} (files rdflow names)")
    if s["version"]:
        _placeholders(s["version"], "version", where)
    s["format"] = entry.get("format", "png")
    s["recon_format"] = entry.get("recon_format") or s["format"]
    for key in ("format", "recon_format"):
        if s[key] not in cio.FORMATS:
            raise RdflowError(f"{where}.{key}: unknown format {s[key]!r}; known: "
                              f"{', '.join(cio.FORMATS)}")
    yuv = s["format"] in cio.YUV_FORMATS or s["recon_format"] in cio.YUV_FORMATS
    for key in ("matrix", "range"):
        if key in entry and not yuv:
            raise RdflowError(f"{where}.{key} applies to the YUV formats ({', '.join(cio.YUV_FORMATS)}) "
                              f"only; format and recon_format are {s['format']}/{s['recon_format']}")
    s["matrix"], s["range"] = entry.get("matrix", "bt601"), entry.get("range", "full")
    cio.check_colour(s["matrix"], s["range"], where=where)
    s["timeout"] = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(s["timeout"], bool) or not isinstance(s["timeout"], (int, float)) or s["timeout"] <= 0:
        raise RdflowError(f"{where}.timeout: {s['timeout']!r}; give seconds > 0")
    s["suffix"] = entry.get("suffix", ".bin")
    if not (isinstance(s["suffix"], str) and s["suffix"].startswith(".") and 1 < len(s["suffix"]) <= 16
            and all(c.isalnum() or c in "._-" for c in s["suffix"])):
        raise RdflowError(f"{where}.suffix: {s['suffix']!r}; give a file extension such as .bin "
                          "or .jpg")
    s["threads"] = int(entry.get("threads") or 1)
    return s


# -- running ------------------------------------------------------------------------------
def _tail(out: bytes, err: bytes) -> str:
    text = (err or out).decode("utf-8", "replace").strip()
    return (text[-TAIL:] or "(no output)")


def run_command(argv: list[str], timeout: float, *, what: str, timeout_key: str) -> str:
    """Run ``argv`` (no shell, stdin closed, own process group); its stderr (or stdout) tail.
    RdflowError with the command line and that tail on failure, exit code or timeout."""
    from ..proc import run

    cmd = cmdline(argv)
    try:  # rdflow.proc: the command's CPU time and peak RSS count in the complexity table
        p = run(argv, timeout=timeout, group=True)
    except OSError as exc:
        raise RdflowError(f"{what}: cannot run {argv[0]!r} ({exc.strerror or exc})\n"
                          f"command: {cmd}") from None
    except subprocess.TimeoutExpired as exc:
        out, err = exc.stdout or b"", exc.stderr or b""
        raise RdflowError(f"{what}: the command ran longer than {timeout_key} = {timeout:g} s and "
                          f"was killed; raise {timeout_key} or check the command\ncommand: {cmd}\n"
                          f"{_tail(out, err)}") from None
    if p.returncode != 0:
        raise RdflowError(f"{what}: the command exited with status {p.returncode}\n"
                          f"command: {cmd}\n{_tail(p.stdout, p.stderr)}")
    return _tail(p.stdout, p.stderr)


@functools.lru_cache(maxsize=None)
def version_line(argv: tuple[str, ...], explicit: bool, where: str) -> str:
    """The first non-empty line of ``argv``'s output (stdout, else stderr). The default
    command must exit 0 (else "unknown", with a warning); a configured one may exit non-zero
    (VTM's ``EncoderApp --help`` exits 1 after its banner) but must print: RdflowError if not."""
    text, problem, p = "", None, None
    try:
        p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=VERSION_TIMEOUT)
        text = (p.stdout.strip() or p.stderr.strip()).decode("utf-8", "replace")
        if not text:
            problem = f"printed nothing (exit status {p.returncode})"
        elif p.returncode and not explicit:
            problem = f"exited with status {p.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem is None:
        return text.splitlines()[0].strip()[:300]
    tail = _tail(p.stdout, p.stderr) if p is not None else ""
    if explicit:
        raise RdflowError(f"{where}.version: the version command {problem}; fix it or remove "
                          f"the key (default: [<encode[0]>, --version])\ncommand: "
                          f"{cmdline(argv)}\n{tail}")
    log.warning("%s: %s %s (%s): the encoder column says 'unknown'; set %s.version to a "
                "command that prints the codec's version", where, cmdline(argv), problem,
                (tail.splitlines() or [""])[-1][:200], where)
    return "unknown"


# -- the codec ----------------------------------------------------------------------------
@register
class CommandCodec(Codec):
    """An external encoder and decoder, one process per picture each (see the module doc)."""

    kind = "command"
    quality_range = (-1000, 100000)
    entry_keys: ClassVar[frozenset] = frozenset(
        {"encode", "decode", "format", "recon_format", "matrix", "range", "timeout", "version",
         "suffix"})  # threads: a key every kind may take (Codec.job_threads)

    @classmethod
    def config_defaults(cls, entry: dict) -> dict:
        out = {"format": "png", "timeout": DEFAULT_TIMEOUT, "suffix": ".bin"}
        fmt = entry.get("format", "png")
        out["recon_format"] = fmt
        if fmt in cio.YUV_FORMATS or entry.get("recon_format", fmt) in cio.YUV_FORMATS:
            out.update(matrix="bt601", range="full")
        return out

    @classmethod
    def check_entry(cls, config: dict, name: str, entry: dict, *, where: str):
        """Argument lists, placeholders, formats, and the binaries (on PATH or a file)."""
        super().check_entry(config, name, entry, where=where)
        s = settings(entry, where)
        for key in ("encode", "decode", "version"):
            if s[key]:
                _require_binary(s[key], key, where)
        cls.version_of(s, where)
        return None

    @staticmethod
    def version_of(s: dict, where: str) -> str:
        argv = s["version"] or [s["encode"][0], "--version"]
        return version_line(tuple(argv), bool(s["version"]), where)

    def __init__(self, spec):
        super().__init__(spec)
        self.where = f"codecs.{spec.name}"
        self.s = settings(spec.options, self.where)
        self.check_quality(spec.quality, where=f"{self.where}.qualities")
        self.version = self.version_of(self.s, self.where)
        self._sizes: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()

    # -- helpers ----------------------------------------------------------------------------
    def _argv(self, key: str, **files) -> list[str]:
        values = dict(files, quality=int(self.spec.quality), threads=self.s["threads"])
        return [a.format(**values) for a in self.s[key]]

    def _run(self, key: str, argv: list[str]) -> str:
        return run_command(argv, float(self.s["timeout"]), what=f"{self.where}.{key}",
                           timeout_key=f"{self.where}.timeout")

    def _output(self, key: str, path: Path, argv: list[str], tail: str) -> bytes:
        """The file the command wrote at {output}; RdflowError when it is missing or empty."""
        what = "no file" if not path.is_file() else "an empty file" if path.stat().st_size == 0 else ""
        if what:
            raise RdflowError(f"{self.where}.{key}: the command exited 0 but wrote {what} at "
                              f"{{output}} ({path}); it must write its output to the path given "
                              f"by {{output}}\ncommand: {cmdline(argv)}\n{tail}")
        return path.read_bytes()

    def warmup(self) -> None:
        """Nothing: every encode/decode is a fresh process, there is no in-process state to
        warm, and a 64x64 noise picture may be outside what the external codec accepts (its
        error would then name a picture that is not in the study)."""

    # -- interface ------------------------------------------------------------------------
    def encode(self, rgb: np.ndarray) -> bytes:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {rgb.shape}")
        s = self.s
        with tempfile.TemporaryDirectory(prefix="rdflow-command-") as tmp:
            src = Path(tmp) / ("input" + cio.EXTENSIONS[s["format"]])
            out = Path(tmp) / ("bitstream" + s["suffix"])
            ch, cw = cio.write_input(src, rgb, s["format"], s["matrix"], s["range"])
            argv = self._argv("encode", input=src, output=out, width=cw, height=ch)
            data = self._output("encode", out, argv, self._run("encode", argv))
        with self.lock:
            self._sizes[hashlib.sha256(data).hexdigest()] = (*rgb.shape[:2], ch, cw)
            while len(self._sizes) > KEEP_SIZES:
                self._sizes.popitem(last=False)
        return data

    def decode(self, data: bytes) -> np.ndarray:
        with self.lock:
            size = self._sizes.get(hashlib.sha256(data).hexdigest())
        if size is None:
            raise RdflowError(f"{self.where}: asked to decode a bitstream it did not encode in "
                              "this process; kind command gives the decoder the picture size "
                              "from the encode, so it decodes only its own bitstreams")
        h, w, ch, cw = size
        s = self.s
        with tempfile.TemporaryDirectory(prefix="rdflow-command-") as tmp:
            src = Path(tmp) / ("bitstream" + s["suffix"])
            out = Path(tmp) / ("recon" + cio.EXTENSIONS[s["recon_format"]])
            src.write_bytes(data)
            argv = self._argv("decode", input=src, output=out, width=cw, height=ch)
            tail = self._run("decode", argv)
            self._output("decode", out, argv, tail)
            try:
                rgb = cio.read_recon(out, s["recon_format"], ch, cw, s["matrix"], s["range"])
            except RdflowError as exc:
                raise RdflowError(f"{self.where}.decode: {exc}\ncommand: {cmdline(argv)}\n"
                                  f"{tail}") from None
        return np.ascontiguousarray(rgb[:h, :w])

    def describe(self) -> dict:
        s = self.s
        colour = (f", matrix={s['matrix']}, range={s['range']}"
                  if {s["format"], s["recon_format"]} & set(cio.YUV_FORMATS) else "")
        return {
            "encoder": self.version,
            "command": f"encode: {cmdline(s['encode'])}; decode: {cmdline(s['decode'])}",
            "settings": f"quality={self.spec.quality}; format={s['format']}, recon_format="
                        f"{s['recon_format']}{colour}; timeout={s['timeout']:g} s",
        }
