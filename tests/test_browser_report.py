"""The HTML report as a reader sees it: a tiny workflow's ``snakemake --report`` page opened in
headless Chromium (tests/browser.py), the front page, a figure, an html table and the result
lists rendered by the page's JavaScript, and no console error.

Needs Debian's ``chromium`` (``apt-get install -y chromium``): skipped without it, except under
CI (``CI=true``), where a missing browser fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from browser import CHROMIUM, render_report

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
FRONT = "RDFLOW-BROWSER-CHECK front page"

SNAKEFILE = '''
report: "workflow.rst"

rule all:
    input: "results/fig_a.png", "results/fig_b.png", "results/table.csv", "results/table.html"

rule figure:
    input: "src.png"
    output: report("results/fig_{x}.png", caption="caption.rst", category="Figures", subcategory="{x}")
    shell: "cp {input} {output}"

rule csv:
    output: report("results/table.csv", caption="caption.rst", category="Tables")
    shell: "printf 'codec,bpp\\\\njpeg,0.5\\\\n' > {output}"

rule html:
    output: report("results/table.html", caption="caption.rst", category="Tables")
    run:
        with open(output[0], "w") as fh:
            fh.write("<html><body><table><tr><th>codec</th><th>bpp</th></tr>"
                     "<tr><td>jpeg</td><td>0.5</td></tr></table></body></html>")
'''


def need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    msg = f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; CI=true, so the browser check of the report must run")
    pytest.skip(msg)


def test_report_renders_in_chromium(tmp_path):
    need_chromium()
    from PIL import Image

    work = tmp_path / "wf"
    work.mkdir()
    (work / "Snakefile").write_text(SNAKEFILE)
    (work / "workflow.rst").write_text(f"{FRONT}\n{'=' * len(FRONT)}\n\nA tiny workflow.\n")
    (work / "caption.rst").write_text("A caption.\n")
    Image.new("RGB", (120, 80), (30, 120, 200)).save(work / "src.png")
    for args in (["--cores", "1"], ["--report", "report.html"]):
        proc = subprocess.run([SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    shot = tmp_path / "report.png"
    r = render_report(work / "report.html", shot, front_text=FRONT)
    assert r["title"] == "Snakemake Report"
    assert r["front_page"], r["front_text"][:500]
    assert r["categories"] == {"Figures": ["a", "b"], "Tables": ["Other"]}
    assert sorted(r["listed"]) == [f"results/{n}" for n in ("fig_a.png", "fig_b.png", "table.csv", "table.html")]
    # each figure and the html table opened with its view button (the csv is a download link)
    assert sorted(r["viewed"]) == ["results/fig_a.png", "results/fig_b.png", "results/table.html"]
    assert r["figure_loaded"]
    assert {(i["result"], i["naturalWidth"], i["naturalHeight"]) for i in r["images"]} == {
        ("results/fig_a.png", 120, 80), ("results/fig_b.png", 120, 80)}
    assert r["table_rendered"] and r["tables"][0]["result"] == "results/table.html"
    assert "jpeg" in r["tables"][0]["text"]
    assert r["console_errors"] == []
    data = shot.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
