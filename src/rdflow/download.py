"""Downloads that can be trusted: retries with backoff, truncation and checksum checks, atomic
placement. A failed download never leaves a file under the final name."""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
from pathlib import Path

from . import RdflowError
from .io import atomic_path, no_space_error

log = logging.getLogger(__name__)

CHUNK = 1 << 20


#: URL schemes rdflow fetches from (config keys and :func:`fetch`); anything else is refused
ALLOWED_SCHEMES = ("http", "https", "file")


class DownloadError(RdflowError):
    pass


def url_scheme(url: str) -> str | None:
    """The scheme of ``url`` (lower case), or None when it is a local path (no ``://``)."""
    if "://" not in url:
        return None
    return url.split("://", 1)[0].strip().lower()


def check_scheme(url: str, key: str) -> None:
    """Refuse a URL whose scheme is not http, https or file, naming the config key."""
    scheme = url_scheme(url)
    if scheme is not None and scheme not in ALLOWED_SCHEMES:
        raise RdflowError(
            f"config key {key}: URL {url!r} has scheme {scheme + '://'!r}, which rdflow does not "
            f"fetch; allowed schemes are {', '.join(s + '://' for s in ALLOWED_SCHEMES)} "
            "(or a local path)")


def config_urls(config: dict) -> list[tuple[str, str]]:
    """(config key, URL) for every URL of the config (values without ``://`` are paths)."""
    out: list[tuple[str, str]] = []

    def add(key: str, value) -> None:
        if isinstance(value, str) and value:
            out.append((key, value))

    for name, d in (config.get("datasets") or {}).items():
        add(f"datasets.{name}.base_url", (d or {}).get("base_url"))
    add("weights.base_url", (config.get("weights") or {}).get("base_url"))
    ref = (config.get("reference") or {}).get("compressai_results")
    if isinstance(ref, str) and "://" in ref:
        add("reference.compressai_results", ref)
    for name, s in ((config.get("video") or {}).get("sequences") or {}).items():
        add(f"video.sequences.{name}.url", (s or {}).get("url"))
    for name, c in (config.get("codecs") or {}).items():
        ck = (c or {}).get("checkpoint")
        for i, one in enumerate(ck if isinstance(ck, list) else [ck]):
            if isinstance(one, str) and "://" in one:
                add(f"codecs.{name}.checkpoint" + (f"[{i}]" if isinstance(ck, list) else ""), one)
    add("detection.base_url", (config.get("detection") or {}).get("base_url"))
    for name, t in (config.get("train") or {}).items():
        add(f"train.{name}.base_url", (t or {}).get("base_url"))
    return out


def check_urls(config: dict) -> None:
    """Config check: every URL in the config is http(s) or file (a codec class checks its own
    digests, e.g. a learned codec's checkpoint_sha256)."""
    for key, url in config_urls(config):
        check_scheme(url, key)


def checkpoint_sha256(config: dict, codec: str, quality: int) -> str | None:
    """The configured SHA-256 of a codec's checkpoint for ``quality`` (None when not given)."""
    c = config["codecs"][codec]
    sums = c.get("checkpoint_sha256")
    if not sums:
        return None
    return sums[list(c["qualities"]).index(int(quality))]


@functools.lru_cache(maxsize=None)
def _opener():
    """A urllib opener that follows redirects to http(s) only (urllib would also follow one to
    ftp://). Built on first use: urllib.request is imported by downloads, not by parsing."""
    import urllib.request

    class SafeRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            scheme = urllib.parse.urlsplit(newurl).scheme.lower()
            if scheme not in ("http", "https"):
                raise _BadScheme(f"{req.full_url} redirects to {newurl}, whose scheme {scheme!r} "
                                 "rdflow does not follow (http and https only)")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(SafeRedirects)


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


def _fetch_once(url: str, tmp: Path, timeout: float, dest: Path | None = None) -> None:
    if "://" not in url:  # a local path given where a URL is expected
        shutil.copyfile(url, tmp)
        return
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "rdflow"})
    with _opener().open(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        expected = resp.headers.get("Content-Length")
        got = 0
        while True:
            block = resp.read(CHUNK)
            if not block:
                break
            try:
                out.write(block)
            except OSError as exc:  # a full disk does not heal by retrying: stop at once
                if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                    total = int(expected) if expected is not None else got + len(block)
                    raise no_space_error(dest or tmp, total, exc) from exc
                raise
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
    scheme = url_scheme(url)
    if scheme is not None and scheme not in ALLOWED_SCHEMES:
        raise DownloadError(
            f"cannot download {url}: scheme {scheme + '://'!r} is not supported (allowed: "
            f"{', '.join(s + '://' for s in ALLOWED_SCHEMES)}). Fix the URL in config.yaml, or "
            + _manual_hint(url, dest, sha256, sha256_prefix))
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(dest) as tmp:
                _fetch_once(url, tmp, timeout_s, dest)
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
        except (_ChecksumMismatch, _BadScheme) as exc:
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


class _BadScheme(Exception):
    pass


def verify(path: str | os.PathLike, sha256: str | None = None, *, what: str = "file") -> str | None:
    """Check a file before use (for example one placed by hand); its SHA-256 when ``sha256``
    was given (and matched)."""
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
        return digest
    return None


def url_join(base: str, name: str) -> str:
    """``base`` (a folder URL, with or without its trailing slash) joined with a file name."""
    return f"{base.rstrip('/')}/{name}"
