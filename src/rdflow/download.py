"""Downloads that can be trusted: retries with backoff, truncation and checksum checks, atomic
placement. A failed download never leaves a file under the final name."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import RdflowError
from .io import atomic_path

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(RdflowError):
    pass


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _manual_hint(url: str, dest: Path, sha256: str | None, sha256_prefix: str | None) -> str:
    want = sha256 or (f"{sha256_prefix}…" if sha256_prefix else None)
    hint = f"download {url} by hand and place it at {dest}"
    if want:
        hint += f" (its SHA-256 must be {want})"
    return hint


def _fetch_once(url: str, tmp: Path, timeout: float) -> None:
    if "://" not in url:  # a local path given where a URL is expected
        shutil.copyfile(url, tmp)
        return
    req = urllib.request.Request(url, headers={"User-Agent": "rdflow"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        expected = resp.headers.get("Content-Length")
        got = 0
        while True:
            block = resp.read(CHUNK)
            if not block:
                break
            out.write(block)
            got += len(block)
        if expected is not None and got != int(expected):
            raise DownloadError(f"truncated body: got {got} of {expected} bytes")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    retries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically and verify it.

    ``sha256`` is the full expected digest; ``sha256_prefix`` the leading hex digits (the
    convention of torch hub / CompressAI zoo file names). A checksum mismatch is not retried:
    it raises at once, names the URL and says where to place the file by hand.
    """
    dest = Path(dest)
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(dest) as tmp:
                _fetch_once(url, tmp, timeout_s)
                digest = sha256_file(tmp)
                bad = (sha256 and digest != sha256.lower()) or (
                    sha256_prefix and not digest.startswith(sha256_prefix.lower())
                )
                if bad:
                    raise _ChecksumMismatch(
                        f"checksum mismatch for {url}: SHA-256 is {digest}, expected "
                        f"{sha256 or sha256_prefix + '…'}. The server may serve another file; "
                        + _manual_hint(url, dest, sha256, sha256_prefix)
                    )
            return dest
        except _ChecksumMismatch as exc:
            raise DownloadError(str(exc)) from None
        except (urllib.error.URLError, OSError, DownloadError, TimeoutError) as exc:
            last = exc
            reason = getattr(exc, "reason", None) or exc
            log.warning("download %s failed (attempt %d/%d): %s", url, attempt, retries, reason)
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 429:
                break  # client errors do not heal by retrying
            if attempt < retries:
                time.sleep(backoff_s * 2 ** (attempt - 1))
    reason = getattr(last, "reason", None) or last
    raise DownloadError(
        f"could not download {url} after {attempt} attempt(s): {reason}. "
        f"Check the URL in config.yaml or your network, or "
        + _manual_hint(url, dest, sha256, sha256_prefix)
    )


class _ChecksumMismatch(Exception):
    pass


def verify(path: str | os.PathLike, sha256: str | None = None, *, what: str = "file") -> None:
    """Check a file before use (for example one placed by hand)."""
    path = Path(path)
    if not path.is_file():
        raise RdflowError(f"{what} {path} does not exist")
    if sha256:
        digest = sha256_file(path)
        if digest != sha256.lower():
            raise RdflowError(
                f"{what} {path} has SHA-256 {digest}, expected {sha256}: it is corrupt or another "
                f"file. Delete it and rerun so that it is downloaded again."
            )
