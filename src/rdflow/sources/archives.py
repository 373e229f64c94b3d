"""Archives and downloads of video sequences: safe 7z checking and extraction, and fetching a
sequence archive with a pinned or recorded SHA-256 (and the restart hints of its errors).

UVG (https://ultravideo.fi) serves its 1080p 8-bit sequences as
``https://ultravideo.fi/video/<Name>_1920x1080_120fps_420_8bit_YUV_RAW.7z``; each archive holds
``<Name>_1920x1080_120fps_420_8bit_YUV.yuv`` (plus a licence text). They are BT.709, limited range,
MPEG-2 ("left") chroma siting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from .. import RdflowError
from ..io import read_json, write_json
from .video import PIX_FMTS

log = logging.getLogger("rdflow.video")

UVG_URL = "https://ultravideo.fi/video/{name}_1920x1080_120fps_420_8bit_YUV_RAW.7z"
UVG_MEMBER_REGEX = r"(?:.*/)?{name}_1920x1080_120fps_420_8bit_YUV\.yuv"


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name would escape the extraction folder, or None if it is safe."""
    if not name or "\x00" in name:
        return "empty or NUL in name"
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return "absolute path"
    if ".." in PurePosixPath(n).parts:
        return "'..' in path"
    return None


def _checked_members(z, archive: Path, expected_member_regex: str, fix: str):
    """The listing of an open archive, with the one member matching the regex; unsafe names,
    links and zero or several matches are refused."""
    pattern = re.compile(expected_member_regex)
    infos = z.list()
    for fi in infos:
        reason = _unsafe_reason(fi.filename)
        if reason:
            raise RdflowError(
                f"archive {archive} holds member {fi.filename!r} whose path would escape the "
                f"extraction folder ({reason}); refused. The archive is not the expected one: {fix}"
            )
        if fi.is_symlink:
            raise RdflowError(
                f"archive {archive} holds a symbolic link {fi.filename!r}; links are refused "
                f"(they can point outside the extraction folder). The archive is not the "
                f"expected one: {fix}"
            )
    names = [fi.filename for fi in infos if not fi.is_directory]
    matches = [n for n in names if pattern.fullmatch(n)]
    if len(matches) != 1:
        raise RdflowError(
            f"archive {archive} holds {names!r}; expected exactly one member matching "
            f"{expected_member_regex!r}, found {len(matches)}. Check the URL and member name "
            f"in config.yaml, or {fix}"
        )
    member = next(fi for fi in infos if fi.filename == matches[0])
    return infos, member


def check_member_size(size: int, what: str, width: int, height: int, min_frames: int = 1, *,
                      fix: str) -> int:
    """The number of whole 8-bit 4:2:0 ``width`` x ``height`` frames in ``size`` bytes; refuses a
    size that is not a whole number of frames, or fewer than ``min_frames``."""
    fb = PIX_FMTS["yuv420p"](int(width), int(height))
    n, extra = divmod(int(size), fb)
    if extra or n < max(1, min_frames):
        why = (f"not a whole number of frames ({n} frames and {extra} bytes more)" if extra
               else f"only {n} frames, fewer than the {min_frames} the study selects")
        raise RdflowError(
            f"{what} is {size} bytes: {why} of {width}x{height} 8-bit 4:2:0 ({fb} bytes a "
            f"frame). Either the file is not the expected one or width/height/frames in config.yaml "
            f"are wrong: {fix}"
        )
    return n


def check_archive(archive: str | os.PathLike, expected_member_regex: str, *, width: int,
                  height: int, min_frames: int = 1, fix: str | None = None) -> tuple[str, int]:
    """Open a 7z archive (its listing only, nothing extracted), find the one member matching the
    regex and check its size against the frame geometry. Returns (member name, frames)."""
    import py7zr

    archive = Path(archive)
    fix = fix or f"delete {archive} and rerun so that it is downloaded again"
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            _, member = _checked_members(z, archive, expected_member_regex, fix)
    except RdflowError:
        raise
    except OSError:
        raise
    except Exception as exc:  # py7zr Bad7zFile, header decoding errors, ...
        raise RdflowError(
            f"archive {archive} is corrupt or not a 7z archive ({type(exc).__name__}: {exc}); {fix}"
        ) from exc
    if member.uncompressed is None:
        raise RdflowError(f"archive {archive}: member {member.filename} does not state its size; {fix}")
    n = check_member_size(member.uncompressed, f"member {member.filename} of archive {archive}",
                          width, height, min_frames, fix=fix)
    return member.filename, n


def extract_7z(
    archive: str | os.PathLike, dest_folder: str | os.PathLike, expected_member_regex: str,
    *, fix: str | None = None,
) -> Path:
    """Extract a 7z archive safely into ``dest_folder`` and return the path of the one member whose
    name fully matches ``expected_member_regex``.

    Before anything is written, every member name is checked: absolute paths, ``..`` components
    and symbolic links are refused, and exactly one regular file must match the regex. Extraction
    goes to a temporary folder beside ``dest_folder`` that is renamed into place only when complete
    (CRC checked), so a crash never leaves a half-extracted folder under the final name.
    ``fix`` replaces the advice of messages about a bad archive (default: delete it and rerun).
    """
    import py7zr

    archive, dest = Path(archive), Path(dest_folder)
    fix = fix or f"delete {archive} and rerun so that it is downloaded again"
    if not archive.is_file():
        raise RdflowError(f"archive {archive} does not exist")
    tmp: Path | None = None
    try:
        with py7zr.SevenZipFile(archive, mode="r") as z:
            infos, member = _checked_members(z, archive, expected_member_regex, fix)
            _check_space(archive, dest, sum(fi.uncompressed or 0 for fi in infos))
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
            z.extractall(path=tmp)
        _move_into_place(archive, tmp, dest, fix)
        tmp = None
        return dest / member.filename
    except RdflowError:
        raise
    except OSError:
        raise  # disk full, permissions: not the archive's fault
    except Exception as exc:  # py7zr ArchiveError/CrcError, lzma/bcj/zstd decoder errors, ...
        raise RdflowError(
            f"archive {archive} is corrupt or not a 7z archive ({type(exc).__name__}: {exc}); {fix}"
        ) from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_space(archive: Path, dest: Path, need: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if need > free:
        raise RdflowError(
            f"extracting {archive} needs {need / 1e9:.2f} GB but {dest.parent} has "
            f"{free / 1e9:.2f} GB free; free some space and rerun"
        )


def _move_into_place(archive: Path, tmp: Path, dest: Path, fix: str) -> None:
    """Rename the complete extraction folder ``tmp`` to ``dest`` (an empty ``dest`` is replaced)."""
    for p in tmp.rglob("*"):  # defence in depth: nothing outside tmp, no links
        if p.is_symlink() or not p.resolve().is_relative_to(tmp.resolve()):
            raise RdflowError(f"archive {archive} produced {p}, outside the folder or a link; {fix}")
    if dest.exists():
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        else:
            raise RdflowError(
                f"{dest} already exists and is not empty; delete it to extract {archive} again"
            )
    tmp.chmod(0o755)
    os.rename(tmp, dest)


def default_record_path(dest: str | os.PathLike) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256.json")


def restart_files(dest: Path, record: Path | None, extracted: Path | None) -> list[Path]:
    """The files to delete to download a sequence afresh: archive, checksum record, .yuv."""
    out = [dest]
    if record is not None:
        out.append(record)
    if extracted is not None and extracted.exists():
        out.append(extracted)
    return out


def restart_hint(files: list[Path], target: Path) -> str:
    names = [str(f) for f in files]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return (f"delete {listed}, then rerun the workflow (or: snakemake {target}) to download and "
            "check it again")


def fetch_sequence(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    record_path: str | os.PathLike | None = None,
    *,
    member: str | None = None,
    width: int | None = None,
    height: int | None = None,
    min_frames: int = 1,
    extracted: str | os.PathLike | None = None,
    **fetch_kwargs,
) -> Path:
    """Download ``url`` to ``dest`` (retries, atomic) and make sure it is the file we expect.

    With ``sha256`` configured, the file is verified against it (on download and on reuse). Without
    one, the digest of the first download is recorded in ``record_path`` (default
    ``<dest>.sha256.json``, with the URL, size and date) and every later call checks ``dest``
    against it, so a corrupted or silently replaced file is noticed. A record for another URL is
    ignored (the URL in config changed) and replaced.

    With ``member`` (the regex of the raw .yuv inside), ``width`` and ``height``, a new download
    is opened before anything is recorded: the member must be there and hold a whole number of
    frames, at least ``min_frames`` (:func:`check_archive`); so a junk first download (an error
    page, another archive) is refused instead of being locked in as the expected digest.
    ``extracted`` (the .yuv made from the archive) is named among the files to delete when a
    later check fails. Without ``member`` the archive cannot be checked and the digest is
    recorded as downloaded.
    """
    from ..download import sha256_file

    dest = Path(dest)
    record = Path(record_path) if record_path is not None else default_record_path(dest)
    extracted = Path(extracted) if extracted is not None else None
    target = extracted or dest
    recorded = _recorded_digest(record, url, dest, extracted, target) if sha256 is None else None
    want = (sha256 or recorded or "").lower() or None
    downloaded = False
    if dest.is_file():
        if want:
            digest = sha256_file(dest)
            if digest != want:
                src = "configured" if sha256 else f"recorded in {record} at its first download"
                files = restart_files(dest, None if sha256 else record, extracted)
                raise RdflowError(
                    f"{dest} (from {url}) has SHA-256 {digest}, but {want} was {src}: the file is "
                    f"corrupt or was replaced. To start over, " + restart_hint(files, target)
                )
            return dest
    else:
        _download(url, dest, want, recorded, record, extracted, target, **fetch_kwargs)
        downloaded = True
    if member is not None and (downloaded or want is None):
        files = restart_files(dest, None if sha256 or want is None else record, extracted)
        check_archive(dest, member, width=width, height=height, min_frames=min_frames,
                      fix="to start over, " + restart_hint(files, target))
    if want is None:
        _write_record(record, url, dest)
    return dest


def _recorded_digest(record: Path, url: str, dest: Path, extracted: Path | None,
                     target: Path) -> str | None:
    """The SHA-256 the record holds for ``url`` (None: no record, or one for another URL)."""
    if not record.is_file():
        return None
    try:
        rec = read_json(record)
        if rec.get("url") == url:
            return rec["sha256"]
        log.warning("%s records %s, not %s; it will be replaced", record, rec.get("url"), url)
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RdflowError(
            f"checksum record {record} is unreadable ({exc}); "
            + restart_hint(restart_files(dest, record, extracted), target)) from None


def _download(url: str, dest: Path, want: str | None, recorded: str | None, record: Path,
              extracted: Path | None, target: Path, **fetch_kwargs) -> None:
    from ..download import DownloadError, fetch

    try:
        fetch(url, dest, sha256=want, **fetch_kwargs)
    except DownloadError as exc:
        if recorded and "checksum mismatch" in str(exc):
            files = restart_files(record, None, extracted)
            raise DownloadError(
                f"{exc}. It differs from the digest recorded in {record} at the first download: "
                "if the server's file changed on purpose, " + restart_hint(files, target)
            ) from None
        raise


def _write_record(record: Path, url: str, dest: Path) -> None:
    from ..download import sha256_file

    digest = sha256_file(dest)
    write_json(
        record,
        {
            "url": url,
            "sha256": digest,
            "bytes": dest.stat().st_size,
            "recorded": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    log.info("recorded SHA-256 %s of %s in %s (pin it in config.yaml)", digest, url, record)


def extract_member(archive: str, dest: str, member_regex: str, *, width: int | None = None,
                   height: int | None = None, min_frames: int = 1, sha256: str | None = None) -> None:
    """Extract the raw .yuv member of a 7z archive to ``dest`` (safe extraction, atomic move).

    With ``width`` and ``height`` the extracted size is checked (whole frames, at least
    ``min_frames``) before the file is moved into place. A bad archive's message names every
    file to delete (the archive, its checksum record unless ``sha256`` is pinned, ``dest``).
    """
    dest_p = Path(dest)
    record = None if sha256 else default_record_path(archive)
    fix = "to start over, " + restart_hint(
        restart_files(Path(archive), record if record and record.exists() else None, dest_p), dest_p)
    work = Path(tempfile.mkdtemp(prefix=f".{dest_p.name}.", dir=dest_p.parent))
    try:
        member = extract_7z(archive, work / "x", member_regex, fix=fix)
        if width and height:
            check_member_size(member.stat().st_size, f"{member.name} extracted from {archive}",
                              width, height, min_frames, fix=fix)
        os.replace(member, dest_p)
    finally:
        shutil.rmtree(work, ignore_errors=True)
