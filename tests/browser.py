"""Open a Snakemake report.html in headless Chromium and say what rendered (a test helper).

Snakemake's report is one self-contained page whose content React builds in the browser, so the
HTML file itself holds no rendered text; ``chromium --dump-dom`` shows only a first frame and
cannot click through to a result. This helper drives the browser instead, with the Chrome
DevTools Protocol over ``--remote-debugging-pipe``: JSON messages, each ended by a NUL byte, on
file descriptors 3 (commands to the browser) and 4 (replies and events from it). No port, no
websocket, standard library only.

:func:`render_report` loads the page, waits until React has rendered, records console errors
and uncaught exceptions, reads the front page, then opens each result category of the menu and
each result in it (clicks, as a reader would) and records every figure ``<img>`` that loaded
(``naturalWidth > 0``) and every table that rendered, and saves a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

#: Debian's package; RDFLOW_CHROMIUM names another binary
CHROMIUM = os.environ.get("RDFLOW_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium driven over ``--remote-debugging-pipe`` (see the module doc)."""

    def __init__(self, binary: str = CHROMIUM, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        self.profile = tempfile.mkdtemp(prefix="rdflow-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands, the browser reads them on fd 3
        self._resp_r, resp_w = os.pipe()  # the browser writes on fd 4, we read
        argv = [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
                "about:blank"]
        # bash puts our pipe ends on the descriptors Chromium expects, then becomes Chromium
        # (bash, not sh: dash refuses descriptor numbers above 9)
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$@" 3<&{cmd_r} 4>&{resp_w} {cmd_r}<&- {resp_w}>&-', "bash", *argv],
            pass_fds=(cmd_r, resp_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        os.close(cmd_r)
        os.close(resp_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    # -- protocol -----------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._resp_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._resp_r, 1 << 20)
            if not chunk:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:] if self.proc.stderr else ""
                raise BrowserError(f"Chromium closed the debugging pipe (exit {self.proc.poll()}): {err}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float | None = None) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise BrowserError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str | None = None, timeout_s: float | None = None) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method and (session is None or e.get("sessionId") == session):
                return self.events.pop(i)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method and (session is None or m.get("sessionId") == session):
                return m
            self.events.append(m)

    def pump(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except BrowserError as e:
            if "timed out" not in str(e):
                raise

    def close(self) -> None:
        try:
            os.write(self._cmd_w, json.dumps({"id": 10**9, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# JavaScript run in the page -------------------------------------------------------------------
# what the page shows now: the content pane (everything outside the navigation bar) and the
# navigation bar's result tables; the Snakemake logo is not a figure
_STATE = """(() => {
  const inNav = e => e.closest('nav') !== null;
  const imgs = [...document.querySelectorAll('img')].filter(i => !inNav(i)
      && !(i.currentSrc || i.src || '').includes('filename=logo.svg'));
  const tables = [...document.querySelectorAll('table')].filter(t => !inNav(t));
  const listed = [...document.querySelectorAll('nav table tbody tr')]
      .map(r => (r.cells[0] ? r.cells[0].innerText : '').trim()).filter(t => t);
  const main = [...document.querySelectorAll('#app > div > div')].filter(e => !inNav(e));
  return JSON.stringify({
    title: document.title,
    ready: document.readyState,
    text: main.map(e => e.innerText).join('\\n').trim(),
    images: imgs.map(i => ({src: (i.currentSrc || i.src || '').slice(0, 80), complete: i.complete,
                            naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})),
    tables: tables.map(t => ({rows: t.rows.length, cells: t.rows.length ? t.rows[0].cells.length : 0,
                              text: t.innerText.slice(0, 200)})),
    iframes: [...document.querySelectorAll('iframe')].length,
    listed: listed,
    menu: [...document.querySelectorAll('nav ul a')].filter(a => a.offsetParent !== null)
      .map(a => a.innerText.trim()).filter(t => t),
    eyes: [...document.querySelectorAll('nav table a[iconname=eye]')]
      .map(a => a.hasAttribute('download') ? 'download' : 'view'),
    nodes: document.body ? document.body.getElementsByTagName('*').length : 0,
  });
})()"""

_CATEGORIES = "JSON.stringify(typeof categories === 'undefined' ? {} : categories)"

# click the visible menu entry (or breadcrumb) labelled ``label``
_CLICK = """((label) => {
  const el = [...document.querySelectorAll('nav a')].filter(e => e.offsetParent !== null)
    .find(e => (e.innerText || '').trim() === label);
  if (!el) return false;
  el.click();
  return true;
})(%s)"""

# the breadcrumbs' first entry (the home icon): back to the menu
_HOME = """(() => { const a = document.querySelector('nav ol li a'); if (a) a.click(); return !!a; })()"""

# click the i-th "view" (eye) button of the navigation bar's result table
_VIEW = """((i) => { const a = document.querySelectorAll('nav table a[iconname=eye]')[i];
  if (!a || a.hasAttribute('download')) return false; a.click(); return true; })(%d)"""

# inside a frame (an html result): its tables
_FRAME_TABLES = """JSON.stringify({ready: document.readyState,
  tables: [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length,
    cells: t.rows.length ? t.rows[0].cells.length : 0, text: t.innerText.slice(0, 200)}))})"""


def _eval(b: Chromium, session: str, expr: str, context: int | None = None):
    params = {"expression": expr, "returnByValue": True, "awaitPromise": True}
    if context is not None:
        params["contextId"] = context
    r = b.send("Runtime.evaluate", params, session)
    if "exceptionDetails" in r:
        raise BrowserError(f"evaluating in the page failed: {r['exceptionDetails']}")
    v = r["result"].get("value")
    return json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append("console." + p["type"] + ": " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            ent = p["entry"]
            out.append(f"log.{ent.get('source')}: {ent.get('text')} {ent.get('url', '')}".strip())
    return out


def _settle(b: Chromium, session: str, *, timeout_s: float, min_nodes: int = 20) -> dict:
    """Poll until the page is loaded and what it shows stops changing (React rendered, images
    decoded)."""
    deadline = time.monotonic() + timeout_s
    last, stable = None, 0
    while True:
        s = _eval(b, session, _STATE)
        key = (s["nodes"], len(s["images"]), sum(i["naturalWidth"] > 0 for i in s["images"]),
               len(s["tables"]), len(s["text"]), tuple(s["listed"]), s["iframes"])
        if s["ready"] == "complete" and s["nodes"] >= min_nodes and key == last:
            stable += 1
            if stable >= 3:
                return s
        else:
            stable = 0
        last = key
        if time.monotonic() > deadline:
            return s
        b.pump(0.15)


def _frame_tables(b: Chromium, session: str, timeout_s: float) -> list[dict]:
    """Tables inside the page's child frames (an html result is shown in an iframe with a data:
    URL, a document of its own origin: read through an isolated world in that frame)."""
    out = []
    tree = b.send("Page.getFrameTree", session=session)["frameTree"]
    for child in tree.get("childFrames", []):
        fid = child["frame"]["id"]
        deadline = time.monotonic() + timeout_s
        while True:
            ctx = b.send("Page.createIsolatedWorld", {"frameId": fid, "worldName": "rdflow-check"},
                         session)["executionContextId"]
            r = _eval(b, session, _FRAME_TABLES, context=ctx)
            if (r["ready"] == "complete" and r["tables"]) or time.monotonic() > deadline:
                break
            b.pump(0.2)
        out += [dict(t, frame=child["frame"].get("url", "")[:60]) for t in r["tables"]]
    return out


def render_report(report_html: Path, screenshot: Path, *, front_text: str | None = None,
                  timeout_s: float = 60.0, max_views: int = 200, binary: str = CHROMIUM) -> dict:
    """Open ``report_html`` (a ``snakemake --report`` page) in headless Chromium, click through
    it as a reader would, and return what rendered:

    ``title`` (of the page); ``front_text`` (the text of the front page's content pane) and
    ``front_page`` (True when it shows ``front_text`` if given, else any text); ``categories``
    (the report's result categories and subcategories); ``visited`` (each menu entry clicked);
    ``listed`` (every result file named in the navigation bar's result tables); ``viewed`` (each
    result opened with its view button: images and html, at most ``max_views``); ``images``
    (each figure ``<img>`` shown, with ``naturalWidth``; the Snakemake logo is left out) and
    ``figure_loaded`` (one of them with ``naturalWidth > 0``); ``tables`` (each table shown in
    the content pane or inside an html result's frame: rows, cells, text) and
    ``table_rendered`` (one of them with a row); ``console_errors`` (console.error calls,
    uncaught exceptions and the browser's error log, e.g. a resource that failed to load); and
    ``screenshot`` (the PNG written: the first figure shown, else the front page)."""
    report_html = Path(report_html).resolve()
    screenshot = Path(screenshot)
    url = report_html.as_uri()
    with Chromium(binary, timeout_s=timeout_s) as b:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            b.send(f"{domain}.enable", session=session)
        b.send("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900,
                                                      "deviceScaleFactor": 1, "mobile": False}, session)
        b.send("Page.navigate", {"url": url}, session)
        b.wait_event("Page.loadEventFired", session, timeout_s=timeout_s)
        front = _settle(b, session, timeout_s=timeout_s)
        cats = _eval(b, session, _CATEGORIES) or {}
        images, tables, listed, visited, viewed = [], [], [], [], []
        shot = False

        def settle():
            return _settle(b, session, timeout_s=min(timeout_s, 20))

        def click(label):
            ok = _eval(b, session, _CLICK % json.dumps(label))
            if ok:
                visited.append(label)
            return ok

        def view_results(where: str):
            nonlocal shot
            s = settle()
            listed.extend(n for n in s["listed"] if n not in listed)
            for i, kind in enumerate(s["eyes"]):
                if kind != "view" or len(viewed) >= max_views:
                    continue
                name = s["listed"][i] if i < len(s["listed"]) else f"{where}#{i}"
                if not _eval(b, session, _VIEW % i):
                    continue
                r = settle()
                viewed.append(name)
                images.extend(dict(im, result=name) for im in r["images"])
                tables.extend(dict(t, result=name) for t in r["tables"])
                if r["iframes"]:
                    tables.extend(dict(t, result=name) for t in _frame_tables(b, session, 10.0))
                if not shot and any(im["naturalWidth"] > 0 for im in r["images"]):
                    _shoot(b, session, screenshot)
                    shot = True

        for cat in sorted(cats):
            _eval(b, session, _HOME)
            settle()
            if not click("Results" if len(cats) == 1 else cat):
                continue
            subs = sorted(cats[cat])
            if len(subs) == 1:
                view_results(cat)
                continue
            for sub in subs:
                settle()
                if click(sub):
                    view_results(f"{cat}/{sub}")
                    click(cat)  # the breadcrumb back to the category's subcategories
        if not shot:
            b.send("Page.navigate", {"url": url}, session)
            b.wait_event("Page.loadEventFired", session, timeout_s=timeout_s)
            _settle(b, session, timeout_s=timeout_s)
            _shoot(b, session, screenshot)
        b.pump(0.3)
        errors = list(dict.fromkeys(_errors(b.events)))  # a page loaded twice reports twice
    text = front["text"]
    return {
        "title": front["title"],
        "front_text": text,
        "front_page": (front_text in text) if front_text else bool(text.strip()),
        "categories": {c: sorted(v) for c, v in cats.items()},
        "visited": visited,
        "listed": listed,
        "viewed": viewed,
        "images": images,
        "figure_loaded": any(i["naturalWidth"] > 0 for i in images),
        "tables": tables,
        "table_rendered": any(t["rows"] > 0 for t in tables),
        "console_errors": errors,
        "screenshot": str(screenshot),
    }


def _shoot(b: Chromium, session: str, path: Path) -> None:
    data = b.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(data))


if __name__ == "__main__":  # python tests/browser.py report.html shot.png
    import sys

    print(json.dumps(render_report(Path(sys.argv[1]), Path(sys.argv[2])), indent=1)[:6000])
