"""Shared fixtures: the ../shared data folder (skip when absent) and a loopback HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RDFLOW_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session", autouse=True)
def _tool_cache(tmp_path_factory):
    """rdflow.toolcache writes to a folder of this test session (inherited by the Snakemake
    processes the tests start), not to the user's ~/.cache/rdflow."""
    old = os.environ.get("RDFLOW_CACHE_DIR")
    os.environ["RDFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("rdflow-cache"))
    yield
    if old is None:
        os.environ.pop("RDFLOW_CACHE_DIR", None)
    else:
        os.environ["RDFLOW_CACHE_DIR"] = old


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a reason when it is not there."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        if os.environ.get("CI") == "true":  # CI promises ../shared: its absence is a failure
            pytest.fail(f"{p} is absent, but CI=true promises ../shared beside the checkout")
        pytest.skip(f"{p} is absent: ../shared (real Kodak, clips, coco8, CompressAI results) "
                    "is not beside this checkout")
    return p


def item_file(work: Path, medium: str, name: str, codec: str, quality, item, ext: str) -> Path:
    """One coded item's file in a finished study at ``work``: ``bin`` its bitstream, ``json`` its
    row (in its batch folder ``batch<k>``). The batch is found by looking (one match, else the
    path in batch0)."""
    assert ext in ("bin", "json"), "reconstructions are members of batch<k>.recon.zip"
    base = work / "results" / medium / name / codec / f"q{quality}"
    found = [p for p in base.glob(f"batch*/{item}.{ext}") if p.parent.name[5:].isdigit()]
    assert len(found) <= 1, found
    return found[0] if found else base / "batch0" / f"{item}.{ext}"


@pytest.fixture
def shared():
    return shared_path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; extra behaviours are switched on by the test through ``server.faults``."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        faults = self.server.faults
        name = self.path.lstrip("/")
        self.server.hits.append(name)
        fault = faults.get(name)
        if fault == "500":
            self.send_error(500, "injected failure")
            return
        if fault == "404":
            self.send_error(404, "not here")
            return
        if fault == "truncate":
            body = (Path(self.directory) / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if isinstance(fault, int) and fault > 0:  # fail the first N requests, then serve
            faults[name] = fault - 1
            self.send_error(503, "try again")
            return
        super().do_GET()


class LoopbackServer:
    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_Handler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.faults = {}
        self.httpd.hits = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    @property
    def faults(self) -> dict:
        return self.httpd.faults

    @property
    def hits(self) -> list:
        return self.httpd.hits

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server serving ``tmp_path / 'www'`` (create files there)."""
    root = tmp_path / "www"
    root.mkdir()
    srv = LoopbackServer(root)
    yield srv
    srv.close()
