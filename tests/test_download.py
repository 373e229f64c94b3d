"""Downloads against a loopback HTTP server: retries, truncation, checksums, atomic placement."""

import hashlib
import socket

import pytest

from rdflow.download import DownloadError, fetch, verify
from rdflow import RdflowError

BODY = b"rdflow test payload " * 5000
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def served(http_server):
    (http_server.root / "f.bin").write_bytes(BODY)
    return http_server


def _leftovers(folder):
    return [p.name for p in folder.iterdir()] if folder.exists() else []


def test_fetch_verifies_and_places(served, tmp_path):
    dest = tmp_path / "out" / "f.bin"
    fetch(served.url + "f.bin", dest, sha256=SHA, backoff_s=0)
    assert dest.read_bytes() == BODY
    assert _leftovers(dest.parent) == ["f.bin"]


def test_sha256_prefix(served, tmp_path):
    fetch(served.url + "f.bin", tmp_path / "f", sha256_prefix=SHA[:8], backoff_s=0)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(served.url + "f.bin", tmp_path / "g", sha256_prefix="deadbeef", backoff_s=0)


def test_retries_with_backoff_then_succeeds(served, tmp_path):
    served.faults["f.bin"] = 2  # two 503s, then the file
    fetch(served.url + "f.bin", tmp_path / "f", sha256=SHA, retries=3, backoff_s=0.01)
    assert served.hits.count("f.bin") == 3


def test_http_error_names_url_and_manual_fix(served, tmp_path):
    served.faults["f.bin"] = "500"
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DownloadError) as e:
        fetch(served.url + "f.bin", dest, sha256=SHA, retries=2, backoff_s=0)
    msg = str(e.value)
    assert served.url + "f.bin" in msg and str(dest) in msg and SHA in msg
    assert "by hand" in msg
    assert _leftovers(dest.parent) == []
    assert served.hits.count("f.bin") == 2


def test_404_is_not_retried(served, tmp_path):
    with pytest.raises(DownloadError, match="404|Not Found|not here"):
        fetch(served.url + "missing.bin", tmp_path / "m", retries=4, backoff_s=0)
    assert served.hits.count("missing.bin") == 1


def test_truncated_body(served, tmp_path):
    served.faults["f.bin"] = "truncate"
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DownloadError, match="truncated|IncompleteRead|incomplete"):
        fetch(served.url + "f.bin", dest, retries=2, backoff_s=0)
    assert _leftovers(dest.parent) == []


def test_refused_connection(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DownloadError, match=rf"127.0.0.1:{port}.*refused"):
        fetch(f"http://127.0.0.1:{port}/f.bin", dest, retries=2, backoff_s=0)
    assert _leftovers(dest.parent) == []


def test_checksum_mismatch_leaves_nothing(served, tmp_path):
    dest = tmp_path / "d" / "f.bin"
    with pytest.raises(DownloadError, match=r"checksum mismatch.*f\.bin.*by hand"):
        fetch(served.url + "f.bin", dest, sha256="0" * 64, backoff_s=0)
    assert _leftovers(dest.parent) == []
    assert served.hits.count("f.bin") == 1  # not retried


def test_existing_file_is_not_clobbered_by_a_failed_download(served, tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    served.faults["f.bin"] = "500"
    with pytest.raises(DownloadError):
        fetch(served.url + "f.bin", dest, retries=1, backoff_s=0)
    assert dest.read_bytes() == b"old"


def test_verify_before_use(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    verify(p, hashlib.sha256(b"abc").hexdigest())
    with pytest.raises(RdflowError, match="Delete it and rerun"):
        verify(p, "1" * 64)


def test_kodak_served_like_a_user_run(shared, http_server, tmp_path):
    """Real Kodak files through the loopback server with the pinned hashes: each lands, byte for
    byte, with the SHA-256 that hashlib computes and that ../shared's SHA256SUMS lists."""
    from rdflow.sources.datasets import KODAK_SHA256

    src = shared("data", "kodak")
    sums = {line.split()[1]: line.split()[0]
            for line in (src / "SHA256SUMS").read_text().splitlines() if line.strip()}
    for name in ("kodim01", "kodim04"):
        body = (src / f"{name}.png").read_bytes()
        (http_server.root / f"{name}.png").write_bytes(body)
        dest = tmp_path / "kodak" / f"{name}.png"
        fetch(http_server.url + f"{name}.png", dest, sha256=KODAK_SHA256[name], backoff_s=0)
        assert dest.read_bytes() == body
        digest = hashlib.sha256(dest.read_bytes()).hexdigest()
        assert digest == KODAK_SHA256[name] == sums[f"{name}.png"]
        assert http_server.hits.count(f"{name}.png") == 1
    assert sorted(_leftovers(tmp_path / "kodak")) == ["kodim01.png", "kodim04.png"]
    # the pin is enforced for these files too: kodim04 served under kodim01's hash is refused
    (http_server.root / "kodim01.png").write_bytes((src / "kodim04.png").read_bytes())
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch(http_server.url + "kodim01.png", tmp_path / "again" / "kodim01.png",
              sha256=KODAK_SHA256["kodim01"], backoff_s=0)
    assert _leftovers(tmp_path / "again") == []
