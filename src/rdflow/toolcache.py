"""Facts learnt by running an external binary, remembered on disk per binary.

Every Snakemake start (a dry run, a local run, each SLURM job's own Snakemake) checks the
study against the tools it will use: the encoders ``ffmpeg -encoders`` lists, whether
``ffmpeg -filters`` has libvmaf, whether libvmaf loads the configured model. Each answer costs
a child process (20-40 ms) and never changes while the binary stays the same file, so it is
kept in ``<cache>/tools.json``, keyed by the binary's real path, size, modification time and
inode: a rebuilt, replaced or moved binary is asked again.

``<cache>`` is ``$RDFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/rdflow``, else ``~/.cache/rdflow``.
The file holds JSON values only (lists of names, booleans, version strings). Only answers that
let the work go on are kept (an encoder list, "libvmaf is there", "the model loads"): a failed
check is run again next time and explains itself. The cache is best effort: a file that cannot
be read or written is ignored; it is replaced atomically, so concurrent jobs never see a partial
file (when two write at once, one's new entry may be lost and is learnt again).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

#: at most this many binaries are remembered (tests and rebuilds make new ones)
MAX_BINARIES = 32
_LOCK = threading.Lock()
_MEMO: dict[str, dict] = {}  # cache file -> its entries, read once per process


def cache_file() -> Path:
    root = os.environ.get("RDFLOW_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "rdflow")
    return Path(root) / "tools.json"


def binary_key(exe: str) -> str | None:
    """The binary's identity: real path, size, mtime (ns) and inode; None when it is not a file."""
    try:
        real = os.path.realpath(exe)
        st = os.stat(real)
    except (OSError, ValueError):
        return None
    return f"{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _read(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _write(path: Path, entries: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tools.", suffix=".part", dir=path.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _entries(path: Path) -> dict:
    key = str(path)
    if key not in _MEMO:
        _MEMO[key] = _read(path)
    return _MEMO[key]


def remembered(exe: str, fact: str, compute: Callable[[], Any], *,
               keep: Callable[[Any], bool] = lambda value: True) -> Any:
    """``compute()``, the answer to ``fact`` about the binary ``exe``, from the cache when this
    same binary was asked before. A new answer is stored when ``keep(answer)`` is true."""
    key = binary_key(exe)
    if key is None:
        return compute()
    path = cache_file()
    with _LOCK:
        facts = _entries(path).get(key)
        if isinstance(facts, dict) and fact in facts:
            return facts[fact]
    value = compute()
    if keep(value):
        with _LOCK:
            entries = _read(path)  # what other processes added since
            facts = entries.pop(key, None)
            facts = facts if isinstance(facts, dict) else {}
            facts[fact] = value
            entries[key] = facts  # the most recently learnt binary last
            for old in list(entries)[:-MAX_BINARIES]:
                del entries[old]
            _write(path, entries)
            _MEMO[str(path)] = entries
    return value
