"""What a user sees in the terminal: rdflow's logger plugin (profiles/default: logger: [rdflow])
prints one line per finished job with done/total and an ETA, and a failed job once, with its
log file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
SNAKEFILE = '''
rule all:
    input: expand("out/{i}.txt", i=range(4)), "out/bad.txt"

rule ok:
    output: "out/{i}.txt"
    wildcard_constraints: i=r"\\d+"
    log: "logs/ok_{i}.log"
    run:
        open(output[0], "w").write(wildcards.i)

rule bad:
    output: "out/bad.txt"
    log: "logs/bad.log"
    run:
        open(log[0], "w").write("RDFLOW-FAILURE-MARKER: the codec crashed\\n")
        raise RuntimeError("boom")
'''


def run(tmp_path, *args):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    return subprocess.run([SNAKEMAKE, "--cores", "1", "--logger", "rdflow", "--show-failed-logs",
                           "--keep-going", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_one_line_per_finished_job_and_the_error_once(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    progress = re.findall(r"^\[\s*(\d+)/(\d+)\s+(\d+)% ETA\s+\S+\] (\w+)", text, flags=re.M)
    assert [int(p[0]) for p in progress] == [1, 2, 3, 4]          # the 4 good jobs, in order
    assert {p[1] for p in progress} == {"6"} and {p[3] for p in progress} == {"ok"}
    assert text.count("Error in rule bad") == 1
    assert "logs/bad.log" in text and text.count("RDFLOW-FAILURE-MARKER") == 1
    assert "Shell command: None" not in text and "message: None" not in text
    assert "rule ok:" not in text                      # Snakemake's per-job blocks are left out


def test_dry_run_keeps_the_job_table(tmp_path):
    proc = run(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert re.search(r"^ok\s+4$", text, flags=re.M) and re.search(r"^total\s+6$", text, flags=re.M)
    assert "Would remove temporary" not in text
