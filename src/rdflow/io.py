"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or Snakemake after a crash) never sees a half-written file under the final name.
The file gets the mode a plain ``open()`` would give (0o666 less the umask), not mkstemp's 0600.
A full disk (ENOSPC) becomes an :class:`~rdflow.RdflowError` naming the path and the byte count;
the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import secrets
from pathlib import Path
from typing import IO, Iterable, Iterator

from . import RdflowError


class NoSpaceError(RdflowError):
    """The disk filled while an output was written (errno ENOSPC or EDQUOT)."""


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def no_space_error(path: str | os.PathLike, nbytes: int | None, exc: OSError) -> NoSpaceError:
    """The message for a write that ran out of space (``nbytes``: what was being written)."""
    n = "" if nbytes is None else f"{nbytes} bytes "
    return NoSpaceError(
        f"no space left on device writing {n}to {path}: free space or point the workdir "
        f"elsewhere ({exc.strerror or exc})")


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new empty file beside ``path``, created as ``open()`` would (mode 0o666 & ~umask: the
    kernel applies the umask, no process-wide umask call), and the mode it got."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            mode = os.fstat(fd).st_mode & 0o7777
        finally:
            os.close(fd)
        return tmp, mode
    raise FileExistsError(f"no free temporary name beside {path}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, nbytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched. The file
    has the mode ``open()`` gives under the umask (set again before the rename, in case the
    writer replaced the temporary file). ``nbytes`` (the size being written, when known) goes
    into the message of a full disk; otherwise the size reached is reported.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp_path, mode = _create_temp(path)
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise no_space_error(path, nbytes, exc) from exc
        raise
    try:
        yield tmp_path
        st = os.stat(tmp_path)
        if (st.st_mode & 0o7777) != mode and os.path.isfile(tmp_path):
            os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except BaseException as exc:
        size = None
        with contextlib.suppress(OSError):
            size = tmp_path.stat().st_size
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise no_space_error(path, nbytes if nbytes is not None else size, exc) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, nbytes: int | None = None,
                **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` when the block ends without error."""
    if "r" in mode or "a" in mode:
        raise ValueError("atomic_open is for writing only")
    with atomic_path(path, nbytes=nbytes) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb", nbytes=len(data)) as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj) -> None:
    data = (json.dumps(obj, indent=1, sort_keys=False, default=_json_default) + "\n").encode()
    write_bytes(path, data)


def read_json(path: str | os.PathLike):
    with open(path) as fh:
        return json.load(fh)


def _json_default(o):
    # numpy scalars and paths
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame atomically (no partial CSV that looks complete)."""
    data = frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").encode()
    write_bytes(path, data)


def png_bytes(rgb, what: str = "image") -> bytes:
    """Lossless 8-bit RGB PNG, fast compression (an intermediate, not an archive)."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RdflowError(f"could not encode {what} as PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, rgb) -> None:
    """:func:`png_bytes` written atomically to ``path``."""
    data = png_bytes(rgb, str(path))
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def archive_member(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``(archive, member)`` when ``path`` names a file inside a ``.zip`` (``<archive>.zip/<name>``,
    how rdflow names one reconstruction in a batch's archive), else None."""
    p = Path(path)
    if p.parent.suffix == ".zip" and p.parent.is_file():
        return p.parent, p.name
    return None


def read_pngs(paths: Iterable[str | os.PathLike], missing: str | None = None,
              what: str = "file") -> Iterator:
    """:func:`read_png` of each path in turn, opening each ``.zip`` archive once for all its
    members (a batch's reconstructions), not once per frame. With ``missing`` (the fix), a path
    that is neither a file nor a member raises "<what> <path> is missing: <missing>"."""
    import zipfile

    import cv2
    import numpy as np

    with contextlib.ExitStack() as stack:
        archives: dict[Path, zipfile.ZipFile] = {}
        for path in paths:
            inside = archive_member(path)
            if inside is None:
                if missing and not Path(path).is_file():
                    raise RdflowError(f"{what} {path} is missing: {missing}")
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            else:
                if inside[0] not in archives:
                    archives[inside[0]] = stack.enter_context(zipfile.ZipFile(inside[0]))
                try:
                    data = archives[inside[0]].read(inside[1])
                except KeyError:
                    why = f"{what} {path} is missing: {missing}" if missing else f"cannot read {path}"
                    raise RdflowError(f"{why} ({inside[0]} has no {inside[1]})") from None
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise RdflowError(f"cannot read {path}")
            yield np.ascontiguousarray(bgr[..., ::-1])


def read_png(path: str | os.PathLike):
    """An 8-bit RGB PNG (a reconstruction; a file, or a member of a ``.zip`` named
    ``<archive>.zip/<member>``) as an HxWx3 uint8 array."""
    return next(read_pngs([path]))
