"""Workflow conventions: snakefmt-clean rule files, and `snakemake --lint` with only the lints
the README explains ("Conventions and lint")."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent
#: the lints README.md explains, and why they stay
EXPLAINED = {
    "Migrate long run directives into scripts or notebooks",   # in-thread run: jobs
    "Mixed rules and functions in same snakefile.",             # input functions beside their rules
}


def test_rule_files_are_snakefmt_clean():
    snakefmt = BIN / "snakefmt"
    assert snakefmt.exists(), "snakefmt is in the test extra (pip install -e '.[test]')"
    proc = subprocess.run([str(snakefmt), "--check", "Snakefile", "workflow/rules/"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_lint_has_only_explained_lints(tmp_path):
    proc = subprocess.run([str(BIN / "snakemake"), "--lint", "-d", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    kinds = set(re.findall(r"^    \* (.+?):\s*$", proc.stdout + proc.stderr, flags=re.M))
    assert kinds, "snakemake --lint printed no lint at all: the parser of this test is stale"
    assert kinds <= EXPLAINED, kinds - EXPLAINED
    readme = (REPO / "README.md").read_text()
    for kind in EXPLAINED:
        assert kind in readme, f"README does not explain the lint {kind!r}"
