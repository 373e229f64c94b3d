"""A throwaway one-node SLURM on 127.0.0.1, for tests (needs root and Debian's packages).

Install the daemons once with ``sh .ci/slurm_setup.sh`` (as root), then::

    with SlurmCluster(tmpdir, gpus=2) as slurm:  # writes slurm.conf, starts the daemons
        slurm.sbatch("--wrap", "hostname")       # any client: pass env=slurm.env
        slurm.snakemake(workdir, "--configfile", cfg, snakefile=REPO / "Snakefile",
                        profile=REPO / "profiles" / "slurm")
        slurm.jobs()                             # what was submitted, with end states
    # everything is stopped (jobs cancelled, daemons terminated) on exit

(tests/test_slurm.py shows how to import this file and use it as a pytest fixture.)

Everything lives under one folder: ``slurm.conf`` (+ ``gres.conf`` when ``gpus>0``), a fresh
munge key, sockets, spool/state dirs, pid files and logs (``log/``). Clients find the config
through ``SLURM_CONF`` (in ``.env``) and the munge socket through ``AuthInfo=socket=...`` in
that config. All daemons listen on 127.0.0.1 only (``CommunicationParameters=NoInAddrAny,
NoCtldInAddrAny``) on ports picked free at start.

One thing outside that folder: while the cluster is up, ``/etc/slurm/slurm.conf`` is a
symlink to its slurm.conf (removed again by ``stop``). snakemake-executor-plugin-slurm-jobstep
0.6.1 runs each job as ``srun ... snakemake`` with every ``SLURM_*`` variable except the job
id removed from the environment, SLURM_CONF included, so ``srun`` inside a job only finds the
default path (same class of problem as snakemake-executor-plugin-slurm issue #164). If
/etc/slurm/slurm.conf exists and is not a leftover link of a dead test cluster, ``start``
refuses instead of touching it (``link_system_conf=False`` skips the link; then the snakemake
jobstep cannot run).

There is no slurmdbd: ``sacct`` answers "accounting storage is disabled", which is why the
snakemake profile must use ``slurm-status-command: squeue`` (and ``MinJobAge`` here is kept
at 600 s so that squeue still lists finished jobs: :meth:`SlurmCluster.jobs` counts
submissions by rule and shows end states: COMPLETED, TIMEOUT, FAILED...). Every finished
job is also appended to ``jobcomp.log`` (``JobCompType=jobcomp/filetxt``), parsed by
:meth:`SlurmCluster.finished_jobs`.

GPUs: by default the node has no GRES, so a job that asks ``--gpus=1`` is refused by sbatch.
``SlurmCluster(..., gpus=N)`` declares N fake GPUs (``GresTypes=gpu``, ``Gres=gpu:N``, each
"device" a symlink to /dev/null in gres.conf) so that the profile's GPU requests (snakemake
resource ``gpu: 1`` -> ``sbatch --gpus=1``) are scheduled and counted as on a real GPU node:
at most N GPU jobs run at once and SLURM sets ``CUDA_VISIBLE_DEVICES`` in the job, but there
is no real device, so torch sees no CUDA and codecs run on the CPU.

Run ``python tests/slurm/cluster.py [DIR]`` as root to start one by hand; it prints the
``export SLURM_CONF=...`` line to use in another shell and stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
# Where SLURM clients look when SLURM_CONF is unset (Debian's compiled-in default).
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel")
SETUP_HINT = "install them as root with: sh .ci/slurm_setup.sh"


def unavailable_reason() -> str | None:
    """Why a SlurmCluster cannot start here (not root, binaries missing), or None."""
    if os.geteuid() != 0:
        return "a one-node SLURM runs its daemons as root; this process is not root"
    missing = [t for t in DAEMONS + CLIENTS if shutil.which(t) is None]
    if missing:
        return f"SLURM/munge binaries not found on PATH: {', '.join(missing)}; {SETUP_HINT}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_total_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal line")


class SlurmError(RuntimeError):
    """The test cluster did not come up (the message carries the daemon logs)."""


class SlurmCluster:
    """One controller + one compute node on 127.0.0.1, all state under ``root``.

    cpus / mem_mb: what the node offers (default: this machine, memory minus 10 %); may be
    more than the hardware has (``SlurmdParameters=config_overrides``), e.g. to accept the
    profile's ``cpus_per_task``/``mem_mb`` on a small CI machine.
    gpus: count-only GPU GRES on the node (0: a GRES-free node).
    min_job_age: seconds squeue keeps listing finished jobs (the profile's squeue status
    command needs >= 3 x slurm-init-seconds-before-status-checks).
    """

    def __init__(self, root: str | os.PathLike, *, cpus: int | None = None,
                 mem_mb: int | None = None, gpus: int = 0, partition: str = "debug",
                 min_job_age: int = 600, cluster_name: str = "rdflow",
                 link_system_conf: bool = True):
        self.root = Path(root).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb or int(_mem_total_mb() * 0.9)
        self.gpus = gpus
        self.partition = partition
        self.min_job_age = min_job_age
        self.cluster_name = cluster_name
        self.link_system_conf = link_system_conf
        self._linked = False
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        if len(str(self.munge_socket)) > 100:  # AF_UNIX paths are limited to 108 bytes
            raise SlurmError(f"{self.root} is too long for a unix socket path; "
                             "use a shorter folder (e.g. tempfile.mkdtemp())")

    # -- configuration ----------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """os.environ plus SLURM_CONF: pass as ``env=`` to sbatch/squeue/snakemake."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "ctld", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o755)  # munged wants its socket dir searchable by all
        key = r / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o600)
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        gres_node = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
            f"StateSaveLocation={r / 'ctld'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "DefMemPerCPU=1000",  # a job without --mem must not take the whole node
            "ReturnToService=2",
            # trust CPUs/RealMemory/Gres below rather than the hardware, so a test can offer
            # a node as big as the profile's requests (nothing is enforced: no cgroups)
            "SlurmdParameters=config_overrides",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={r / 'jobcomp.log'}",
            f"MinJobAge={self.min_job_age}",
            "KillWait=2",
            "OverTimeLimit=0",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "MessageTimeout=30",
        ]
        if self.gpus:
            lines.append("GresTypes=gpu")
        lines += [
            f"NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.node} "
            f"CPUs={self.cpus} RealMemory={self.mem_mb}{gres_node} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES "
            "MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        gres = r / "gres.conf"
        if self.gpus:
            # slurmd reports count-only gpu GRES as 0 (node drained: "gres/gpu count
            # reported lower than configured"), so each fake GPU is a device file: a
            # symlink to /dev/null (slurmd wants a character device).
            (r / "dev").mkdir(exist_ok=True)
            for i in range(self.gpus):
                dev = r / "dev" / f"gpu{i}"
                if not dev.is_symlink():
                    dev.symlink_to("/dev/null")
            gres.write_text(f"NodeName={self.node} Name=gpu "
                            f"File={r / 'dev'}/gpu[0-{self.gpus - 1}]\n")
        elif gres.exists():
            gres.unlink()

    # -- lifecycle --------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.stdout", "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env,
                                            start_new_session=True)
        log.close()

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        reason = unavailable_reason()
        if reason:
            raise SlurmError(reason)
        self.write_config()
        if self.link_system_conf:
            self._link_system_conf()
        m = self.root / "munge"
        self._spawn("munged", ["munged", "--foreground", "--force",
                               f"--socket={self.munge_socket}", f"--key-file={m / 'munge.key'}",
                               f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'seed'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged to create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._wait(lambda: self._ok(["scontrol", "ping"], "UP"), timeout,
                   "slurmctld to answer scontrol ping")
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", timeout,
                   f"node {self.node} to be idle in sinfo")
        return self

    def stop(self) -> None:
        """Cancel all jobs, then stop slurmd, slurmctld, munged (TERM, then KILL)."""
        ctld = self.procs.get("slurmctld")
        if ctld is not None and ctld.poll() is None:
            try:
                self.run(["scancel", "--full", "--user", "root"], check=False, timeout=30)
                self._wait(lambda: not self.run(
                    ["squeue", "--noheader", "-o", "%i", "--states=RUNNING,COMPLETING"],
                    check=False, timeout=10).stdout.strip(), 30, "cancelled jobs to end")
            except (SlurmError, subprocess.TimeoutExpired):
                pass  # the leftovers are killed below
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: only its children
                p.wait(timeout=10)
        self._kill_leftover_jobs()
        if self._linked and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()
        self._linked = False

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink():
            target = SYSTEM_CONF.resolve()
            pidfile = target.parent / "slurmctld.pid"
            alive = False
            if target.exists() and pidfile.exists():
                try:
                    os.kill(int(pidfile.read_text().strip()), 0)
                    alive = True
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
            if alive:
                raise SlurmError(f"{SYSTEM_CONF} links to {target}, whose slurmctld is running: "
                                 "another test cluster is up; stop it first (one at a time)")
            SYSTEM_CONF.unlink()  # a leftover of a test cluster that was killed
        elif SYSTEM_CONF.exists():
            raise SlurmError(f"{SYSTEM_CONF} exists (a real SLURM is configured here): the test "
                             "cluster will not replace it; run the SLURM tests in a scratch "
                             "container/VM (CI), or pass link_system_conf=False")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self._linked = True

    def _kill_leftover_jobs(self) -> None:
        """SIGKILL slurmstepd and job processes of *this* cluster that outlived scancel.

        They are re-parented away from slurmd, so they are found by their environment:
        SLURM_CONF=<this cluster's slurm.conf> plus SLURM_JOB_ID (jobs) or slurmstepd.
        """
        mine = b"SLURM_CONF=" + str(self.conf).encode()
        for pid_dir in Path("/proc").glob("[0-9]*"):
            try:
                cmd = (pid_dir / "cmdline").read_bytes().split(b"\0")
                env = (pid_dir / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            is_stepd = bool(cmd) and cmd[0].endswith(b"slurmstepd")
            is_job = any(v.startswith(b"SLURM_JOB_ID=") for v in env)
            if mine in env and (is_stepd or is_job) and int(pid_dir.name) != os.getpid():
                try:
                    os.kill(int(pid_dir.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "SlurmCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- queries ----------------------------------------------------------------------
    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client with this cluster's SLURM_CONF; returns the CompletedProcess."""
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              check=check, timeout=kw.pop("timeout", 60), **kw)

    def _ok(self, argv: list[str], needle: str) -> bool:
        try:
            out = self.run(argv, check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and needle in out.stdout

    def node_state(self) -> str:
        out = self.run(["sinfo", "--noheader", "-N", "-n", self.node, "-o", "%T"], check=False)
        return out.stdout.strip().rstrip("*~#$@")

    def sbatch(self, *args: str) -> str:
        """Submit with ``sbatch --parsable ARGS``; returns the job id."""
        return self.run(["sbatch", "--parsable", *args]).stdout.strip().split(";")[0]

    def job_state(self, jobid: str) -> str:
        out = self.run(["squeue", "--noheader", "--states=all", "-j", jobid, "-o", "%T"],
                       check=False)
        return out.stdout.strip()

    def wait_job(self, jobid: str, timeout: float = 120.0) -> str:
        """Wait until a job leaves PENDING/RUNNING/COMPLETING; returns its final state."""
        states: list[str] = []

        def done() -> bool:
            states.append(self.job_state(jobid))
            return states[-1] not in ("", "PENDING", "CONFIGURING", "RUNNING", "COMPLETING")

        self._wait(done, timeout, f"job {jobid} to finish")
        return states[-1]

    def jobs(self) -> list[dict[str, str]]:
        """All jobs squeue knows (finished ones for MinJobAge s): id, state, name, comment.

        snakemake-executor-plugin-slurm names every job of one snakemake run by its run id
        and sets the comment to ``rule_<rule>[_wildcards_<w>]`` (e.g.
        ``rule_compress_frame__clip_c_q1_b0``: the study's coding rules have no wildcards).
        """
        out = self.run(["squeue", "--noheader", "--states=all", "-o", "%i|%T|%j|%k"]).stdout
        keys = ("id", "state", "name", "comment")
        return [dict(zip(keys, line.split("|", 3))) for line in out.splitlines() if line]

    def job_info(self, jobid: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (TimeLimit, NumCPUs, MinMemoryNode, TresPerJob...)."""
        out = self.run(["scontrol", "show", "job", "--oneliner", jobid]).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def _snakemake_cmd(self, workdir, args, snakefile, profile, env):
        import sys

        cmd = [sys.executable, "-m", "snakemake"]
        if profile is not None:
            cmd += ["--profile", str(profile)]
        cmd += ["-s", str(snakefile), "-d", str(workdir), *args]
        run_env = dict(env if env is not None else self.env)
        run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
        return cmd, run_env

    def snakemake(self, workdir: str | os.PathLike, *args: str, snakefile: str | os.PathLike,
                  profile: str | os.PathLike | None = None, timeout: float = 600,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``python -m snakemake`` (this interpreter's) against this cluster.

        ``--profile PROFILE`` (when given), ``-s SNAKEFILE``, ``-d WORKDIR``, then ARGS; stdout
        and stderr together in ``.stdout``. The interpreter's bin dir goes first on PATH so
        that the jobs' own ``python -m snakemake`` find the same environment.
        """
        cmd, run_env = self._snakemake_cmd(workdir, args, snakefile, profile, env)
        return subprocess.run(cmd, env=run_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def start_snakemake(self, workdir: str | os.PathLike, *args: str, output: str | os.PathLike,
                        snakefile: str | os.PathLike, profile: str | os.PathLike | None = None,
                        env: dict[str, str] | None = None) -> subprocess.Popen:
        """Like :meth:`snakemake`, without waiting: stdout and stderr go to the file
        ``output`` (a pipe nobody reads would block snakemake). Wait with ``.wait(timeout)``."""
        cmd, run_env = self._snakemake_cmd(workdir, args, snakefile, profile, env)
        with open(output, "wb") as out:
            return subprocess.Popen(cmd, env=run_env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)

    @staticmethod
    def submitted(snakemake_output: str) -> list[str]:
        """SLURM job ids a snakemake run submitted, from its output (runs that share the
        cluster at the same time are told apart this way)."""
        return re.findall(r"has been submitted with SLURM jobid (\d+)", snakemake_output)

    def finished_jobs(self) -> list[dict[str, str]]:
        """Every job that ended, from jobcomp.log: dicts with JobId, Name, JobState, ..."""
        path = self.root / "jobcomp.log"
        if not path.exists():
            return []
        jobs = []
        for line in path.read_text().splitlines():
            jobs.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return jobs

    def _wait(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SlurmError(f"{name} exited with {p.returncode} while waiting for "
                                     f"{what}\n{self.logs()}")
            if cond():
                return
            time.sleep(0.3)
        raise SlurmError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def logs(self, tail: int = 30) -> str:
        """The last lines of every daemon log, for error messages."""
        parts = []
        logdir = self.root / "log"
        for f in sorted(logdir.glob("*")):
            if f.suffix == ".stdout" and (logdir / f"{f.stem}.log").exists():
                continue  # slurmctld/slurmd -D write the same lines to both
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {f} ---\n" + "\n".join(lines))
        return "\n".join(parts)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="rdslurm-"))
    t0 = time.monotonic()
    with SlurmCluster(root, gpus=int(os.environ.get("RDFLOW_SLURM_GPUS", "0"))) as c:
        print(f"SLURM up in {time.monotonic() - t0:.1f} s (node {c.node}, {c.cpus} CPUs, "
              f"{c.mem_mb} MB, {c.gpus} GPUs). In another shell:\n"
              f"  export SLURM_CONF={c.conf}\nCtrl-C stops it.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    import sys
    raise SystemExit(main(sys.argv))
