"""Cluster execution (profiles/slurm): checks run when a study starts, before any submission.

snakemake-executor-plugin-slurm 2.6.1 does not fail where SLURM is unusable, it waits forever:
- without the SLURM client commands its submission thread dies on a missing ``sacct`` after
  "No SLURM account given, trying to guess." and the run hangs with nothing submitted;
- with working commands but no accounting database (no slurmdbd), ``sacct`` only answers
  "accounting storage is disabled"; the plugin reads that as "no news yet" and polls forever
  whenever it ends up using ``sacct`` for job status (the default when sacct exists, and its
  silent fallback from ``slurm-status-command: squeue`` when MinJobAge is below 3 x
  ``slurm-init-seconds-before-status-checks``).

:func:`check_executor` (called from the Snakefile's ``onstart:``) turns both into an error
that says what is missing and how to fix it. It does nothing for other executors (local runs,
dry runs, and the jobs inside SLURM, which run under the ``slurm-jobstep`` executor).
"""

from __future__ import annotations

import re
import shutil
import subprocess

from . import RdflowError

#: The SLURM commands the submitting snakemake process runs (plugin 2.6.1): sbatch submits,
#: squeue (or sacct) polls, scancel cancels on Ctrl-C/failure, sinfo finds the default partition.
SLURM_COMMANDS = ("sbatch", "squeue", "sinfo", "scancel")

FIX_MISSING = ("run snakemake where SLURM works: on the cluster's login node, after loading "
               "its SLURM module if it has one (`module load slurm`); or run the study locally "
               "without --profile profiles/slurm")


def executor_name(workflow) -> str | None:
    """Name of the executor plugin this snakemake process uses ("slurm", "local", ...)."""
    plugin = getattr(workflow, "executor_plugin", None)
    return getattr(plugin, "name", None)


def missing_slurm_commands(which=shutil.which) -> list[str]:
    """The commands of :data:`SLURM_COMMANDS` that are not on PATH."""
    return [c for c in SLURM_COMMANDS if which(c) is None]


def min_job_age(run=subprocess.run) -> int | None:
    """SLURM's MinJobAge in seconds (how long squeue lists finished jobs), from
    ``scontrol show config``; None when scontrol is missing or does not say."""
    try:
        out = run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    m = re.search(r"^\s*MinJobAge\s*=\s*(\d+)\s*(\w*)", out.stdout, re.M)
    if not m:
        return None
    value, unit = int(m.group(1)), m.group(2).lower()
    return value * 3600 if unit in ("h", "hour", "hours") else value


def effective_status_command(configured: str | None, init_seconds: int, job_age: int | None,
                             sacct_on_path: bool) -> str:
    """What plugin 2.6.1 polls job status with, given its settings and the cluster's.

    squeue is kept only if MinJobAge >= 3 x init_seconds (else finished jobs may vanish from
    squeue before the first poll, and the plugin silently switches to sacct when sacct exists).
    """
    cmd = configured or ("sacct" if sacct_on_path else "squeue")
    if cmd == "squeue" and sacct_on_path and (job_age is None or job_age < 3 * init_seconds):
        cmd = "sacct"
    if cmd == "sacct" and not sacct_on_path:
        cmd = "squeue"
    return cmd


def accounting_disabled(run=subprocess.run) -> bool:
    """True when sacct runs but the cluster keeps no accounting (no slurmdbd)."""
    try:
        out = run(["sacct", "-X", "-n", "-o", "JobID", "-S", "now"], capture_output=True,
                  text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode != 0 and "accounting storage is disabled" in (out.stderr + out.stdout)


def check_slurm(status_command: str | None, init_seconds: int, which=shutil.which,
                run=subprocess.run) -> None:
    """Raise RdflowError when the slurm executor cannot work here (see the module doc)."""
    missing = missing_slurm_commands(which)
    if missing:
        raise RdflowError(
            f"the slurm executor (--profile profiles/slurm or --executor slurm) needs the SLURM "
            f"command{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"{'which are' if len(missing) > 1 else 'which is'} not on PATH here; {FIX_MISSING}")
    sacct_on_path = which("sacct") is not None
    job_age = min_job_age(run)
    used = effective_status_command(status_command, init_seconds, job_age, sacct_on_path)
    if used == "sacct" and accounting_disabled(run):
        if (status_command or "sacct") == "sacct":
            why, fix = ("slurm-status-command is sacct (or unset)",
                        "set slurm-status-command: squeue (profiles/slurm does), on a SLURM "
                        "whose MinJobAge is at least 3 x slurm-init-seconds-before-status-checks")
        elif job_age is None:
            why, fix = ("`scontrol show config` did not report MinJobAge, so the plugin cannot "
                        "tell whether squeue still lists finished jobs and uses sacct",
                        "make `scontrol` work on this node (it is part of SLURM's client tools)")
        else:
            why, fix = (f"MinJobAge is {job_age} s, less than 3 x "
                        f"slurm-init-seconds-before-status-checks ({3 * init_seconds} s), so "
                        "the plugin switches from squeue to sacct",
                        "lower it: --slurm-init-seconds-before-status-checks "
                        f"{max(1, job_age // 3)} (or in profiles/slurm/config.yaml)")
        raise RdflowError(
            "this SLURM keeps no job accounting (sacct: 'accounting storage is disabled'), so "
            f"the slurm executor would wait forever for job states: {why}. Fix: {fix}")


def check_executor(workflow) -> None:
    """The Snakefile's ``onstart:`` check: for the slurm executor, fail before any submission
    where it could not work (SLURM commands missing, or job states it could never read)."""
    if executor_name(workflow) != "slurm":
        return
    settings = getattr(workflow, "executor_settings", None)
    check_slurm(getattr(settings, "status_command", None),
                int(getattr(settings, "init_seconds_before_status_checks", None) or 40))
