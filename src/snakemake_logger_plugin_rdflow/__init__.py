"""rdflow's terminal view for Snakemake (``--logger rdflow``, set in profiles/default).

One line per finished job with done/total, percent and an ETA, for example::

    [ 37/280  13% ETA 1m52s] compress_image  dataset=kodak3 codec=jpeg quality=5 image=kodim03

Everything else is Snakemake's own text (its default formatter and filter): the dry-run job
table, warnings, and errors, each failed job shown once with its log file and the log's tail.
The per-job blocks Snakemake prints before a job starts (input, output, reason, "Shell
command: None" for run: rules) are left out; ``--verbose`` or another ``--logger`` brings them
back.
"""

from __future__ import annotations

import sys
import time
from logging import LogRecord

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent


#: Snakemake messages left out of the view unless --verbose (one per temp() file in a dry run)
QUIET_PREFIXES = ("Would remove temporary output", "Removing temporary output", "Assuming unrestricted shared",
                  "Select jobs to execute", "Execute ", "Building DAG of jobs", "Using shell:",
                  "Provided cores", "Rules claiming more threads", "Complete log(s)")


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _wildcards(wc) -> str:
    items = wc.items() if hasattr(wc, "items") else []
    return " ".join(f"{k}={v}" for k, v in items)


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from snakemake.logging import DefaultFormatter

        self.stream = sys.stdout if getattr(self.common_settings, "stdout", False) else sys.stderr
        self.default = DefaultFormatter(self.common_settings.quiet, self.common_settings.show_failed_logs)
        self.verbose = bool(getattr(self.common_settings, "verbose", False))
        self.jobs: dict[int, str] = {}
        self.finished: list[str] = []
        self.shown_errors: set = set()
        self.started = None

    # -- the view ------------------------------------------------------------------------
    def text(self, record: LogRecord) -> str | None:
        event = getattr(record, "event", None)
        if event == LogEvent.JOB_INFO:
            rule = record.__dict__.get("rule_name")
            if record.__dict__.get("local"):  # a localrule: runs in this process, also on a cluster
                rule = f"{rule} (localrule)"
            name = f"{rule}  {_wildcards(record.__dict__.get('wildcards'))}".rstrip()
            self.jobs[record.__dict__.get("jobid")] = name
            self.started = self.started or time.monotonic()
            return self.default.format(record) if self.verbose else None
        if event == LogEvent.SHELLCMD:
            cmd = record.__dict__.get("cmd") or record.__dict__.get("msg")
            return str(cmd) if cmd and cmd != "None" and self.verbose else None
        if event == LogEvent.JOB_FINISHED:
            self.finished.append(self.jobs.pop(record.__dict__.get("job_id"), ""))
            return None
        if event == LogEvent.PROGRESS:
            done, total = int(record.__dict__["done"]), int(record.__dict__["total"])
            pct = 100 * done // max(total, 1)
            elapsed = time.monotonic() - (self.started or time.monotonic())
            eta = _eta(elapsed / done * (total - done)) if done else "?"
            what = self.finished.pop(0) if self.finished else ""
            width = len(str(total))
            return f"[{done:>{width}}/{total} {pct:>3}% ETA {eta:>6}] {what}"
        if event == LogEvent.WORKFLOW_STARTED and not self.verbose:
            return None
        if event in (LogEvent.JOB_ERROR, LogEvent.GROUP_ERROR):
            key = (event, record.__dict__.get("jobid"), str(record.__dict__.get("output")))
            if key in self.shown_errors:
                return None
            self.shown_errors.add(key)
            return self.default.format(record).replace("\n    message: None", "")
        text = self.default.format(record)
        if not self.verbose and text.startswith(QUIET_PREFIXES):
            return None
        if text and (record.levelname in ("ERROR", "WARNING") or "\n" in text or "Exiting" in text):
            if text in self.shown_errors:  # Snakemake repeats some errors at exit
                return None
            self.shown_errors.add(text)
        return text

    def emit(self, record: LogRecord) -> None:
        try:  # logging.Handler.handle holds the handler's own lock around emit
            text = self.text(record)
            if text:
                self.stream.write(text.rstrip("\n") + "\n")
                self.stream.flush()
        except Exception:  # noqa: BLE001
            self.handleError(record)

    # -- what Snakemake asks of a logger plugin ---------------------------------------------
    @property
    def writes_to_stream(self) -> bool:
        return True

    @property
    def writes_to_file(self) -> bool:
        return False

    @property
    def has_filter(self) -> bool:
        return False  # Snakemake's default filter (quiet, dry-run, printshellcmds) applies

    @property
    def has_formatter(self) -> bool:
        return True

    @property
    def needs_rulegraph(self) -> bool:
        return False
