"""rdflow.engine: the scheduler keeps one pending re-evaluation timer (snakemake#3744).

Without the workaround every finished job adds a chain of 1-s timers that wake Snakemake's
scheduler loop; a real snakemake run shows it as a thread count that grows with the jobs done.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

WORKFLOW = textwrap.dedent('''
    import sys
    sys.path.insert(0, {src!r})
    import rdflow.engine
    if config.get("coalesce"):
        rdflow.engine.coalesce_reevaluation()
    rule all:
        input: expand("out/{{x}}.txt", x=range(12))
    rule one:
        output: "out/{{x}}.txt"
        run:
            import threading, time
            time.sleep(0.4)
            open(output[0], "w").write(str(threading.active_count()))
''')


def threads_seen(tmp_path: Path, coalesce: bool) -> list[int]:
    """Threads alive in the snakemake process as each of 12 one-at-a-time jobs ran."""
    work = tmp_path / ("on" if coalesce else "off")
    work.mkdir()
    (work / "Snakefile").write_text(WORKFLOW.format(src=str(REPO / "src")))
    proc = subprocess.run([SNAKEMAKE, "--cores", "1", "--force-use-threads", "--quiet", "all",
                           "--config", f"coalesce={int(coalesce)}"], cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [int((work / f"out/{i}.txt").read_text()) for i in range(12)]


@pytest.mark.e2e
def test_one_pending_timer_instead_of_one_more_per_finished_job(tmp_path):
    off = threads_seen(tmp_path, coalesce=False)
    on = threads_seen(tmp_path, coalesce=True)
    # the bug this works around is there: the timer chains pile up as jobs finish
    assert max(off) >= 8, off
    # with the workaround: the main thread, the job thread and at most one timer
    assert max(on) <= 4, on


def test_installing_twice_keeps_one_replacement():
    from snakemake.scheduling.job_scheduler import JobScheduler

    import rdflow.engine

    assert rdflow.engine.coalesce_reevaluation()
    first = JobScheduler._schedule_reevalutation
    assert rdflow.engine.coalesce_reevaluation()
    assert JobScheduler._schedule_reevalutation is first
    assert getattr(first, rdflow.engine.MARK)
