"""A workaround for the workflow engine's scheduler, installed when the Snakefile is read.

Snakemake 9's job scheduler (``snakemake.scheduling.job_scheduler.JobScheduler``) starts a
re-evaluation timer (``threading.Timer`` of ``--max-jobs-per-timespan``'s timespan, 1 s by
default) on every pass of its loop while jobs wait for free cores, and every finished job
causes one more pass: after k finished jobs, k timer chains wake the loop k times a second,
and each pass selects among all waiting jobs and stats their inputs. The scheduler's cost
grows with the square of the jobs (snakemake/snakemake#3744). Measured here: 100 batch jobs
of 30 tiny frames each (3,000 items) ran at 1.36 x an in-process loop making the same calls,
the scheduler thread taking a third of a core by the end while the jobs waited for the GIL.

:func:`coalesce_reevaluation` keeps one pending timer per scheduler: a timer exists only so
that the loop looks again once the rate limit's window has passed, and one that fires does
exactly that; finished jobs wake the loop on their own. The timer is a daemon thread, so it
never holds up the end of a run. Nothing else about scheduling changes. Where the scheduler
has no such method (another Snakemake), it does nothing.
"""

from __future__ import annotations

import threading

#: set on the replacement, so installing twice (the Snakefile read again) is a no-op
MARK = "_rdflow_coalesced"


def coalesce_reevaluation() -> bool:
    """Replace ``JobScheduler._schedule_reevalutation`` (sic) by one that keeps at most one
    pending timer per scheduler. True when installed (or already in place)."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "_schedule_reevalutation", None)
    if original is None:
        return False
    if getattr(original, MARK, False):
        return True
    lock = threading.Lock()

    def schedule(self, delay) -> None:
        with lock:
            pending = getattr(self, "_rdflow_timer", None)
            if pending is not None and pending.is_alive():
                return

            def fire() -> None:
                with lock:
                    self._rdflow_timer = None
                self._open_jobs.release()

            timer = threading.Timer(delay, fire)
            timer.daemon = True
            self._rdflow_timer = timer
        timer.start()

    setattr(schedule, MARK, True)
    JobScheduler._schedule_reevalutation = schedule
    return True
