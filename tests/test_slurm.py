"""profiles/slurm against a real one-node SLURM on 127.0.0.1 (issue 8).

Opt-in: the cluster tests run only with RDFLOW_TEST_SLURM=1, as root, after
``sh .ci/slurm_setup.sh`` installed Debian's slurmctld/slurmd/slurm-client/munge, with the
``[slurm]`` extra installed (snakemake-executor-plugin-slurm 2.6.1). .ci/run does all three.
Once opted in, a missing prerequisite FAILS the tests (CI must not skip them silently).
test_profile_without_sbatch_fails_clearly needs no SLURM and runs whenever the plugin is
installed.

The cluster tests share one cluster and one first run of tests/slurm/tiny.smk through the
profile (module fixtures), then the last test reruns it: keep them in this order.
Timing on a 2-core VM: cluster up ~1 s, first run ~2 min (the time-limit kill alone needs
60-90 s: SLURM time limits are whole minutes, checked every 30 s; the study's SLURM run goes
on meanwhile), rerun ~30 s; the whole module ~3 min.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"
TINY = REPO / "tests" / "slurm" / "tiny.smk"
FRAMES, BATCH = 7, 3  # -> ceil(7/3) = 3 coding submissions (3, 3 and 1 frames)

_spec = importlib.util.spec_from_file_location("rdflow_test_slurm_cluster",
                                               REPO / "tests" / "slurm" / "cluster.py")
cluster_mod = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cluster_mod
_spec.loader.exec_module(cluster_mod)
SlurmCluster = cluster_mod.SlurmCluster

pytestmark = pytest.mark.slurm

PLUGIN_HINT = "install it with: pip install -c constraints.txt -e '.[slurm]'"


def _plugin_installed() -> bool:
    return importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None


def require_real_slurm() -> None:
    """Skip unless opted in; once opted in, fail on a missing prerequisite."""
    if os.environ.get("RDFLOW_TEST_SLURM") != "1":
        pytest.skip("real-SLURM test: opt in with RDFLOW_TEST_SLURM=1 (as root, after "
                    "sh .ci/slurm_setup.sh); .ci/run does")
    reason = cluster_mod.unavailable_reason()
    if reason:
        pytest.fail(f"RDFLOW_TEST_SLURM=1 but {reason}")
    if not _plugin_installed():
        pytest.fail(f"RDFLOW_TEST_SLURM=1 but snakemake-executor-plugin-slurm is missing; "
                    f"{PLUGIN_HINT}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster: 16 CPUs, 128 GB, 2 (fake) GPUs, so the profile's
    per-rule requests of two runs at once (tiny.smk and the study) fit whatever the CI
    machine has."""
    require_real_slurm()
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus=16, mem_mb=128000, gpus=2) as c:
        yield c


def run_tiny(slurm, workdir: Path, *config: str) -> SimpleNamespace:
    """tiny.smk through profiles/slurm; returns the process, the SLURM jobs it submitted
    (from squeue) and its wall time."""
    t0 = time.monotonic()
    proc = slurm.snakemake(
        workdir,
        "--slurm-init-seconds-before-status-checks", "2",  # profile says 40 (fine on a cluster)
        "--config", f"frames={FRAMES}", f"batch={BATCH}", *config,
        snakefile=TINY, profile=PROFILE, timeout=500,
    )
    return SimpleNamespace(proc=proc, jobs=jobs_of(slurm, proc.stdout),
                           seconds=time.monotonic() - t0, wd=workdir)


def jobs_of(slurm, snakemake_output: str) -> list[dict[str, str]]:
    """The SLURM jobs (squeue rows) one snakemake run submitted."""
    ids = set(slurm.submitted(snakemake_output))
    return [j for j in slurm.jobs() if j["id"] in ids]


@pytest.fixture(scope="module")
def first_run(slurm, study_started, tmp_path_factory):
    """Everything runs; `slow` sleeps 300 s under a 1-minute limit and is killed by SLURM.

    The study's SLURM run (study_started) goes on meanwhile: most of this run is waiting for
    SLURM's time limit (whole minutes, checked every 30 s), so the CI pays for it once."""
    return run_tiny(slurm, tmp_path_factory.mktemp("tiny"), "slow_sleep=300", "slow_runtime=1")


def _where(path: Path) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in path.read_text().split())


def test_cluster_runs_a_batch_job(slurm, tmp_path):
    out = tmp_path / "hostname.txt"
    jobid = slurm.sbatch("--wrap", "hostname", "-o", str(out))
    assert slurm.wait_job(jobid) == "COMPLETED"
    assert out.read_text().strip() == slurm.node
    # no slurmdbd here: sacct cannot answer, which is why the profile uses squeue
    sacct = slurm.run(["sacct", "-X", "-j", jobid], check=False)
    assert sacct.returncode != 0 and "accounting storage is disabled" in sacct.stderr
    assert any(j["JobId"] == jobid and j["JobState"] == "COMPLETED"
               for j in slurm.finished_jobs())


def _frames(wd: Path) -> list[Path]:
    return [wd / "frames" / "clip" / "c" / "q1" / f"{i}.txt" for i in range(FRAMES)]


def _images(wd: Path) -> list[Path]:
    return [wd / "images" / "set" / "c" / "q1" / f"{i}.txt" for i in ("one", "two")]


def _assert_request(info: dict[str, str], gpu: bool, mem: str, time_limit: str,
                    cpus: str = "1") -> None:
    """An sbatch request as SLURM recorded it (scontrol show job)."""
    assert ("gpu:1" in info.get("TresPerJob", "")) == gpu, info
    assert info["MinMemoryNode"] == mem, info
    assert info["TimeLimit"] == time_limit, info
    assert info["NumCPUs"] == cpus, info


def test_coding_jobs_are_batches_of_items(slurm, first_run):
    """One SLURM job per batch: ceil(FRAMES / BATCH) coding submissions, each writing every
    item of its batch (and no other), each asking for what the rule declares."""
    n = math.ceil(FRAMES / BATCH)
    coding = {j["comment"]: j for j in first_run.jobs
              if j["comment"].startswith("rule_compress_frame__")}
    assert sorted(coding) == [f"rule_compress_frame__clip_c_q1_b{k}" for k in range(n)], \
        (first_run.jobs, first_run.proc.stdout[-4000:])
    assert {j["state"] for j in coding.values()} == {"COMPLETED"}
    frames = _frames(first_run.wd)
    for k in range(n):
        batch = list(range(k * BATCH, min((k + 1) * BATCH, FRAMES)))
        job = coding[f"rule_compress_frame__clip_c_q1_b{k}"]
        for i in batch:
            w = _where(frames[i])
            assert w["SLURM_JOB_ID"] == job["id"], (i, w, job)  # written by its batch's job
            assert w["ITEMS"] == ",".join(map(str, batch)), (i, w)
        _assert_request(slurm.job_info(job["id"]), gpu=True, mem="8000M", time_limit="01:00:00")
    # both images in one job (one batch of at most BATCH)
    images = [_where(f) for f in _images(first_run.wd)]
    assert {w["ITEMS"] for w in images} == {"one,two"}
    image_job = [j for j in first_run.jobs if j["comment"] == "rule_compress_image__set_c_q1_b0"]
    assert {w["SLURM_JOB_ID"] for w in images} == {image_job[0]["id"]}
    # the other rules: one submission each
    others = sorted(j["comment"] for j in first_run.jobs if j["comment"] not in coding)
    assert others == ["rule_compress_image__set_c_q1_b0", "rule_detect_decoded",
                      "rule_slow", "rule_vmaf_video"]


def test_gpu_stages_get_a_gpu_and_the_others_do_not(slurm, first_run):
    wd = first_run.wd
    for gpu_out in [*_images(wd), wd / "detect.txt", *_frames(wd)]:
        assert _where(gpu_out)["CUDA_VISIBLE_DEVICES"] != "-", gpu_out
    vmaf = _where(wd / "vmaf.txt")
    assert vmaf["CUDA_VISIBLE_DEVICES"] == "-"
    assert vmaf["CPUS"] == "2"  # --cpus-per-task follows the rule's threads
    by_rule = {j["comment"]: slurm.job_info(j["id"]) for j in first_run.jobs}
    # every request comes from the rule's own resources (the profile sets none per rule) ...
    _assert_request(by_rule["rule_compress_image__set_c_q1_b0"], gpu=True, mem="8000M",
                    time_limit="01:00:00")
    _assert_request(by_rule["rule_detect_decoded"], gpu=True, mem="8000M", time_limit="01:00:00")
    _assert_request(by_rule["rule_vmaf_video"], gpu=False, mem="4000M", time_limit="01:00:00",
                    cpus="2")
    # ... or, where the rule declares nothing, from the profile's default-resources
    _assert_request(by_rule["rule_slow"], gpu=False, mem="4000M", time_limit="00:01:00")


def test_time_limit_kill_is_reported_as_failed(first_run):
    proc = first_run.proc
    assert proc.returncode != 0, proc.stdout[-4000:]
    slow = [j for j in first_run.jobs if j["comment"] == "rule_slow"]
    assert [j["state"] for j in slow] == ["TIMEOUT"]
    assert f"SLURM-job '{slow[0]['id']}' failed, SLURM status is: 'TIMEOUT'" in proc.stdout
    assert not (first_run.wd / "slow.txt").exists()
    # keep-going: the independent jobs finished anyway
    assert (first_run.wd / "vmaf.txt").exists()
    assert all(f.exists() for f in _frames(first_run.wd))


def test_rerun_resumes_only_the_killed_job(slurm, first_run):
    wd = first_run.wd
    done = {p: p.stat().st_mtime_ns for p in wd.rglob("*.txt")}
    rerun = run_tiny(slurm, wd, "slow_sleep=1", "slow_runtime=5")
    assert rerun.proc.returncode == 0, rerun.proc.stdout[-4000:]
    assert [(j["comment"], j["state"]) for j in rerun.jobs] == [("rule_slow", "COMPLETED")]
    assert (wd / "slow.txt").read_text().strip() == "slept 1"
    assert {p: p.stat().st_mtime_ns for p in done} == done  # nothing else was redone


def _tiny_image_dataset(folder: Path, n: int = 1, size: tuple[int, int] = (48, 32)) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        rgb = np.stack([(128 + 100 * np.sin(xx / (4.0 + i))), 2.0 * yy + 7 * i,
                        (xx * 7 + yy * 3 + 50 * i) % 256], -1)
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.mark.parametrize("snakefile", ["tiny", "study"])
def test_profile_without_sbatch_fails_clearly(tmp_path, snakefile):
    """Where SLURM is absent the run must stop before any submission with a message naming
    sbatch, not hang: the onstart check (rdflow.cluster.check_executor), through tiny.smk and
    through the repo's own Snakefile. (Without it, plugin 2.6.1 hangs forever.)"""
    if not _plugin_installed():
        pytest.skip(f"snakemake-executor-plugin-slurm is not installed; {PLUGIN_HINT}")
    import shutil
    import subprocess

    import yaml

    bin_dir = tmp_path / "bin"  # a PATH with a shell and `which`, but no SLURM commands
    bin_dir.mkdir()
    for tool in ("bash", "sh", "which"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed to build the test PATH"
        (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{bin_dir}"
    wd = tmp_path / "wd"
    args = ["-s", str(TINY)]
    if snakefile == "study":
        wd.mkdir()
        (wd / "config.yaml").write_text(yaml.safe_dump({
            "device": "cpu", "vmaf": {"enabled": False},
            "datasets": {"mine": {"kind": "local", "path": str(_tiny_image_dataset(tmp_path / "img"))}},
            "codecs": {"jpeg": {"kind": "jpeg", "qualities": [50]}}}))
        args = ["-s", str(REPO / "Snakefile"), "--configfile", str(wd / "config.yaml")]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", str(PROFILE), *args, "-d", str(wd)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode != 0
    out = proc.stdout
    assert "RdflowError" in out, out[-3000:]
    assert "needs the SLURM commands sbatch, squeue, sinfo, scancel" in out, out[-3000:]
    assert "not on PATH" in out and "login node" in out and "without --profile profiles/slurm" in out
    assert "has been submitted with SLURM jobid" not in out
    assert time.monotonic() - t0 < 60


def _workflow_rule_names() -> set[str]:
    import re

    names = set()
    for f in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        if f.exists():
            text = f.read_text()
            names |= set(re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", text, re.M))
            names |= set(re.findall(r"^use rule .* as (\w+)", text, re.M))
    return names


#: profile keys that would configure particular rules (by name); profiles/slurm has none:
#: the rules declare their own threads and resources (a renamed or generated rule, e.g. the
#: per-batch compress_image__<dataset>_<codec>_q<q>_b<k>, would silently lose them)
RULE_KEYS = {"set-resources", "set-threads", "set-resource-scopes", "groups", "group-components",
             "localrules"}


def _profile_words(obj) -> set[str]:
    """Every key and string value in a parsed YAML document."""
    if isinstance(obj, dict):
        return set(map(str, obj)) | {w for v in obj.values() for w in _profile_words(v)}
    if isinstance(obj, list):
        return {w for v in obj for w in _profile_words(v)}
    return {obj} if isinstance(obj, str) else set()


def test_profile_is_short_and_names_no_rule():
    import yaml

    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    assert RULE_KEYS & set(profile) == set(), "profiles/slurm configures rules by name"
    rules = _workflow_rule_names()
    assert rules, "no rules found in Snakefile/workflow/rules"
    words = _profile_words(profile)
    assert words & rules == set(), f"profiles/slurm names rules: {words & rules}"
    assert not [w for w in words if w.startswith(("compress_image", "compress_frame"))]
    # defaults for rules that declare nothing; GPUs and CPUs stay with the rules (a gpu or
    # cpus_per_task here would override every rule's own request)
    assert set(profile["default-resources"]) == {"mem_mb", "runtime"}
    assert set(profile["resources"]) == {"gpu"}  # a global limit: GPU jobs at once


#: the rules with cluster limits of their own (mem_mb, runtime); every other rule runs with
#: profiles/slurm's default-resources
OWN_LIMITS = {"compress_image": (8000, 60), "compress_frame": (8000, 60),
              "extract_sequence": (2000, 60), "compress_sequence": (16000, 240),
              "detect_original": (8000, 60), "detect_decoded": (8000, 60),
              "vmaf_video": (4000, 60)}


def _dry_run_resources(workdir: Path) -> dict[str, list[dict[str, str]]]:
    """The resources of every job a dry run of the real workflow plans, per rule (as Snakemake
    would hand them to the executor: the rule's own, else the profile's default-resources)."""
    import subprocess

    import yaml

    if _plugin_installed():
        profile = ["--profile", str(PROFILE)]
    else:  # without the plugin, executor: slurm cannot be parsed: the profile's defaults alone
        defaults = yaml.safe_load((PROFILE / "config.yaml").read_text())["default-resources"]
        profile = ["--default-resources", *(f"{k}={v}" for k, v in defaults.items())]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *profile, "--workflow-profile", "none",  # rdflow's
         # terminal view (profiles/default) hides the job details
         "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "-n"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in proc.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+resources: (.*)$", line)) and rule:
            jobs.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
            rule = None
    assert jobs, proc.stdout[-4000:]
    return jobs


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_rules_declare_their_own_gpus_and_limits(tmp_path, device):
    """The real workflow on a study with a learned and a classical image codec, a learned video
    codec, an archived sequence and YOLO detection, planned through profiles/slurm: exactly the
    jobs that run a model on the GPU ask for one (none with device: cpu), every coding batch
    asks for 8000 MB and 60 min, the heavy stages for their own limits, everything else for
    the profile's defaults. (snakemake hands these to sbatch as --gpus, --mem and -t.)"""
    import yaml

    url = "http://127.0.0.1:9/"  # never contacted: dry runs only
    cfg = {"device": device, "batch_size": 2,
           "datasets": {"mine": {"kind": "local",
                                 "path": str(_tiny_image_dataset(tmp_path / "img", n=3))}},
           "codecs": {"rand": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                               "weights": "random", "qualities": [1]},
                      "jpeg": {"kind": "jpeg", "qualities": [50]}},
           "video": {"frames": {"count": 5},
                     "sequences": {"uvg": {"source": "uvg", "url": url + "Clip_32x32.7z",
                                           "member": r"clip\.yuv", "sha256": None,
                                           "width": 32, "height": 32}}},
           "video_codecs": {"ssf": {"kind": "ssf2020", "qualities": [1]}},
           "detection": {"enabled": True, "backend": "yolo", "weights": "yolov8n.pt",
                         "offline": False, "base_url": url}}
    wd = tmp_path / "study"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = _dry_run_resources(wd)
    # the coding batches: 3 images and 5 frames in batches of 2, per (codec, quality)
    expected = {f"compress_image__mine_{c}_b{k}" for c in ("rand_q1", "jpeg_q50") for k in (0, 1)}
    expected |= {f"compress_frame__uvg_{c}_b{k}" for c in ("rand_q1", "jpeg_q50") for k in (0, 1, 2)}
    assert {r for r in jobs if r.startswith("compress_")} - {"compress_sequence"} == expected
    for stage in ("extract_sequence", "compress_sequence", "detect_original", "detect_decoded",
                  "vmaf_video", "vmaf_image"):
        assert stage in jobs, f"the study plans no {stage} job: {sorted(jobs)}"
    gpu_jobs = set()
    for rule, resources in jobs.items():
        stage = rule.split("__", 1)[0]
        mem, runtime = OWN_LIMITS.get(stage, (4000, 30))  # the profile's default-resources
        for res in resources:
            assert (res.get("mem_mb"), res.get("runtime")) == (str(mem), str(runtime)), (rule, res)
            if int(res.get("gpu", 0)):
                gpu_jobs.add(rule)
    on_gpu = {r for r in expected if "rand" in r} | {"compress_sequence", "detect_original",
                                                        "detect_decoded"}
    assert gpu_jobs == (on_gpu if device == "cuda" else set())


# --- the onstart check (rdflow.cluster), without SLURM ------------------------------------

def _fake_which(missing=()):
    return lambda cmd: None if cmd in missing else f"/usr/bin/{cmd}"


def _fake_run(min_job_age="MinJobAge               = 300 sec", sacct_error=None):
    """Stand-in for subprocess.run answering `scontrol show config` and `sacct`."""
    import subprocess

    def run(argv, **kw):
        if argv[0] == "scontrol":
            if min_job_age is None:
                raise FileNotFoundError("scontrol")
            return subprocess.CompletedProcess(argv, 0, f"ClusterName = x\n{min_job_age}\n", "")
        if argv[0] == "sacct":
            if sacct_error:
                return subprocess.CompletedProcess(argv, 1, "", sacct_error)
            return subprocess.CompletedProcess(argv, 0, "", "")
        raise AssertionError(argv)

    return run


NO_ACCOUNTING = "Slurm accounting storage is disabled"


def test_check_executor_is_a_noop_for_other_executors(monkeypatch):
    """Other executors: check_executor returns None without looking for or running any SLURM
    command: shutil.which and subprocess.run/Popen (also where rdflow.cluster bound them as
    default arguments) fail the test if called. The slurm executor, under the same guards, does
    reach them: the control that the guards would catch a check that ran."""
    import shutil
    import subprocess

    from rdflow import cluster
    from rdflow.cluster import check_executor

    calls = []

    def forbidden(name):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called with {args}")
        return fail

    which, run = forbidden("shutil.which"), forbidden("subprocess.run")
    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(subprocess, "Popen", forbidden("subprocess.Popen"))
    for fn in (cluster.check_slurm, cluster.missing_slurm_commands, cluster.min_job_age,
               cluster.accounting_disabled):  # defaults bound at import: which=shutil.which, ...
        guarded = {"which": which, "run": run}
        monkeypatch.setattr(fn, "__defaults__", tuple(
            guarded.get(getattr(d, "__name__", None), d) for d in fn.__defaults__))
    for name in ("local", "dryrun", "slurm-jobstep", "touch"):
        wf = SimpleNamespace(executor_plugin=SimpleNamespace(name=name), executor_settings=None)
        assert check_executor(wf) is None
    assert check_executor(SimpleNamespace()) is None  # a workflow object without an executor plugin
    assert calls == []
    # the control: the slurm executor looks for its commands first, and the guard sees it
    wf = SimpleNamespace(executor_plugin=SimpleNamespace(name="slurm"), executor_settings=None)
    with pytest.raises(AssertionError, match="shutil.which called"):
        check_executor(wf)
    assert calls[:1] == ["shutil.which"]


def test_missing_slurm_commands_are_named():
    from rdflow import RdflowError
    from rdflow.cluster import check_slurm

    with pytest.raises(RdflowError) as e:
        check_slurm("squeue", 40, which=_fake_which({"sbatch"}), run=_fake_run())
    msg = str(e.value)
    assert "SLURM command sbatch, which is not on PATH" in msg
    assert "login node" in msg and "module load slurm" in msg
    with pytest.raises(RdflowError, match="commands sbatch, squeue, sinfo, scancel, which are"):
        check_slurm("squeue", 40, which=_fake_which({"sbatch", "squeue", "sinfo", "scancel"}),
                    run=_fake_run())


def test_min_job_age_from_scontrol():
    from rdflow.cluster import min_job_age

    assert min_job_age(_fake_run("MinJobAge               = 600 sec")) == 600
    assert min_job_age(_fake_run("MinJobAge = 2h")) == 7200
    assert min_job_age(_fake_run("MinJobAge = 45")) == 45
    assert min_job_age(_fake_run("SomethingElse = 1")) is None
    assert min_job_age(_fake_run(None)) is None  # scontrol missing


@pytest.mark.parametrize("configured,init,age,sacct,expected", [
    ("squeue", 40, 300, True, "squeue"),   # MinJobAge 300 >= 3 x 40
    ("squeue", 40, 100, True, "sacct"),    # too short: the plugin falls back to sacct
    ("squeue", 40, None, True, "sacct"),   # unknown: falls back too
    ("squeue", 40, 100, False, "squeue"),  # no sacct to fall back to
    (None, 40, 300, True, "sacct"),        # plugin default where sacct exists
    (None, 40, 300, False, "squeue"),
    ("sacct", 2, 600, True, "sacct"),
    ("sacct", 2, 600, False, "squeue"),
])
def test_effective_status_command(configured, init, age, sacct, expected):
    from rdflow.cluster import effective_status_command

    assert effective_status_command(configured, init, age, sacct) == expected


def test_status_queries_that_would_wait_forever_are_refused():
    from rdflow import RdflowError
    from rdflow.cluster import check_slurm

    which = _fake_which()
    # profiles/slurm on a SLURM without accounting and a long enough MinJobAge: fine
    check_slurm("squeue", 40, which=which, run=_fake_run(sacct_error=NO_ACCOUNTING))
    # working accounting: sacct is fine whatever MinJobAge says
    check_slurm(None, 40, which=which, run=_fake_run("MinJobAge = 10 sec"))
    check_slurm("squeue", 40, which=_fake_which({"sacct"}), run=_fake_run("MinJobAge = 10 sec"))

    with pytest.raises(RdflowError) as e:
        check_slurm(None, 40, which=which, run=_fake_run(sacct_error=NO_ACCOUNTING))
    assert "wait forever" in str(e.value) and "slurm-status-command: squeue" in str(e.value)
    with pytest.raises(RdflowError) as e:
        check_slurm("squeue", 40, which=which,
                    run=_fake_run("MinJobAge = 60 sec", sacct_error=NO_ACCOUNTING))
    assert "MinJobAge is 60 s" in str(e.value)
    assert "--slurm-init-seconds-before-status-checks 20" in str(e.value)
    with pytest.raises(RdflowError, match="did not report MinJobAge"):
        check_slurm("squeue", 40, which=which, run=_fake_run(None, sacct_error=NO_ACCOUNTING))


# --- the download target and local network rules -------------------------------------------

def test_every_fetching_rule_runs_locally():
    """Compute nodes often have no internet: every download_* rule of the workflow must be in
    a localrules: directive (then --profile profiles/slurm runs it in the snakemake process)."""
    import re

    texts = [f.read_text() for f in sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    if not texts:
        pytest.skip("no workflow rules in this checkout")
    local = set()
    for text in texts:
        for block in re.findall(r"^localrules:\s*\n((?:[ \t]+\w+,?[ \t]*\n)+)", text, re.M):
            local |= set(re.findall(r"\w+", block))
    fetching = {n for n in _workflow_rule_names() if n.startswith("download")}
    assert fetching, "no download rules found"
    assert fetching <= local, f"fetching rules that would run on compute nodes: {fetching - local}"
    assert "extract_sequence" not in local  # unpacking is CPU work: a cluster job


def _planned(workdir: Path, *targets: str) -> dict[str, int]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "-n", "--quiet", "rules", "--", *targets],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def test_download_target_fetches_what_the_study_needs_and_nothing_else(tmp_path):
    """A study using every kind of download (Kodak images, zoo weights, a checkpoint URL, a UVG
    archive, SSF2020 weights, YOLO weights): `snakemake download` plans exactly the download
    jobs of the full study, and nothing else (no extraction, no coding)."""
    import yaml

    from test_video_workflow import make_raw

    make_raw(tmp_path / "clip.yuv", w=32, h=32, n=2)
    url = "http://127.0.0.1:9/"  # never contacted: dry runs only
    cfg = {
        "device": "cpu",
        "weights": {"base_url": url},
        "datasets": {"kodak": {"kind": "kodak", "base_url": url, "images": ["kodim01", "kodim02"]},
                     "mine": {"kind": "local", "path": str(_tiny_image_dataset(tmp_path / "img"))}},
        "codecs": {
            "zoo": {"kind": "learned", "architecture": "bmshj2018-factorized", "weights": "pretrained",
                    "qualities": [1, 2]},
            "ckpt": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "weights": "checkpoint",
                     "checkpoint": url + "hp-q{quality}.pth.tar", "qualities": [3]},
            "rand": {"kind": "learned", "architecture": "bmshj2018-hyperprior", "weights": "random",
                     "qualities": [1]},
            "jpeg": {"kind": "jpeg", "qualities": [50]},
        },
        "video": {"frames": {"count": 2},
                  "codecs": ["jpeg", "zoo"],
                  "sequences": {
                      "uvg": {"source": "uvg", "url": url + "Clip_32x32.7z", "member": r"clip\.yuv",
                              "sha256": None, "width": 32, "height": 32},
                      "raw": {"source": "file", "path": str(tmp_path / "clip.yuv"), "width": 32,
                              "height": 32}}},
        "video_codecs": {"ssf": {"kind": "ssf2020", "qualities": [1]}},
        "detection": {"enabled": True, "backend": "yolo", "weights": "yolov8n.pt",
                      "offline": False, "base_url": url},
    }
    wd = tmp_path / "study"
    wd.mkdir()
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg))
    full = _planned(wd)
    download = _planned(wd, "download")
    fetching = {r: n for r, n in full.items() if r.startswith("download")}
    assert fetching == {r: n for r, n in download.items() if r != "download"}
    assert download.pop("download") == 1
    # every kind of fetch is there (a renamed rule or a forgotten stage shows up here)
    assert fetching == {"download_kodak_image": 2, "download_zoo_weights": 2,
                        "download_checkpoint": 1, "download_sequence": 1,
                        "download_video_zoo_weights": 1, "download_detection_weights": 1}
    assert full["extract_sequence"] == 1  # unpacking: run by the study, not by `download`


# --- the study itself through profiles/slurm vs a local run -----------------------------------

STUDY_FRAMES, STUDY_BATCH = 6, 4  # -> ceil(6/4) = 2 coding jobs per (codec, quality): 4 + 2
STUDY_POINTS = [("hp", 2), ("jpeg", 50)]
STUDY_CSVS = ["results/video_rd_synth.csv", "results/video_rd_synth_summary.csv",
              "results/image_rd_mine.csv", "results/image_rd_mine_summary.csv"]
#: Columns that measure the run, not the codec: time and process memory. Everything else in
#: the tables must be identical between a local run and a SLURM run.
RUN_COLUMNS = ["enc_s", "dec_s", "process_rss_mb", "process_vram_mb"]


@pytest.fixture(scope="module")
def study_started(slurm, tmp_path_factory):
    """The repo's Snakefile on a tiny study (synthetic raw clip of 6 frames at 192x176, two
    192x176 images, JPEG and a learned codec whose checkpoint is fetched from a URL; coding
    batches of STUDY_BATCH items): run locally (profiles/default), then started through
    profiles/slurm on the test cluster without waiting (the `study` fixture waits)."""
    from conftest import LoopbackServer
    from test_e2e import run_snakemake, save_random_checkpoint, write_config
    from test_video_workflow import make_raw

    root = tmp_path_factory.mktemp("study")
    www = root / "www"
    www.mkdir()
    save_random_checkpoint(www / "hp-q2.pth.tar", "bmshj2018-hyperprior", 2, seed=2)
    make_raw(root / "clip.yuv", w=192, h=176, n=STUDY_FRAMES)
    images = _tiny_image_dataset(root / "images", n=2, size=(192, 176))
    server = LoopbackServer(www)
    popen = None
    try:
        cfg = {"device": "cpu", "batch_size": STUDY_BATCH,
               "datasets": {"mine": {"kind": "local", "path": str(images)}},
               "codecs": {"hp": {"kind": "learned", "architecture": "bmshj2018-hyperprior",
                                 "weights": "checkpoint",
                                 "checkpoint": server.url + "hp-q{quality}.pth.tar",
                                 "qualities": [2]},
                          "jpeg": {"kind": "jpeg", "qualities": [50]}},
               "video": {"frames": {"count": STUDY_FRAMES},
                         "sequences": {"synth": {"source": "file", "path": str(root / "clip.yuv"),
                                                 "width": 192, "height": 176}}}}
        local, remote = root / "local", root / "slurm"
        write_config(local, cfg)
        write_config(remote, cfg)
        t0 = time.monotonic()
        run_snakemake(local, *STUDY_CSVS)
        local_s = time.monotonic() - t0
        popen = slurm.start_snakemake(
            remote, "--configfile", str(remote / "config.yaml"),
            "--slurm-init-seconds-before-status-checks", "2",
            "--slurm-keep-successful-logs", *STUDY_CSVS,
            output=root / "slurm_run.log", snakefile=REPO / "Snakefile", profile=PROFILE)
        yield SimpleNamespace(local=local, remote=remote, popen=popen, log=root / "slurm_run.log",
                              server=server, local_s=local_s, started=time.monotonic())
    finally:
        if popen is not None and popen.poll() is None:  # a failed test: cancel its jobs
            popen.terminate()
            popen.wait(timeout=120)
        server.close()


def _coding_times(slurm, jobs: list[dict[str, str]], local: Path, remote: Path) -> str:
    """For the record (not asserted): per coding job, SLURM's start-to-end time next to the
    coding time its job log reports ("done in"), remote and local: the difference is the
    job's start-up (sbatch job, srun, the job's own Snakemake, imports, the model)."""
    from datetime import datetime

    ended = {j.get("JobId"): j for j in slurm.finished_jobs()}
    lines = []
    for job in sorted(jobs, key=lambda j: j["comment"]):
        m = re.match(r"rule_compress_(frame|image)__(.+)_(\w+)_q(\d+)_b(\d+)$", job["comment"])
        if not m:
            continue
        kind, where, codec, q, k = m.groups()
        log = f"logs/compress_{kind}/{where}/{codec}/q{q}/b{k}.log"

        def done(root: Path) -> str:
            found = re.findall(r"done in ([\d.]+) s", (root / log).read_text()) \
                if (root / log).exists() else []
            return f"{float(found[-1]):.1f} s" if found else "?"

        rec = ended.get(job["id"], {})
        try:
            span = (datetime.fromisoformat(rec["EndTime"])
                    - datetime.fromisoformat(rec["StartTime"])).total_seconds()
            span_s = f"{span:.0f} s"
        except (KeyError, ValueError):
            span_s = "?"
        lines.append(f"  {job['comment'][5:]}: SLURM job {span_s}, coding {done(remote)} "
                     f"(local run: coding {done(local)})")
    return "coding jobs:\n" + "\n".join(lines)


@pytest.fixture(scope="module")
def study(slurm, study_started):
    """The study's SLURM run, finished: its output, its SLURM jobs, the server's hits."""
    st = study_started
    st.popen.wait(timeout=600)
    output = st.log.read_text()
    jobs = jobs_of(slurm, output)
    elapsed = re.findall(r"Elapsed time: (\S+)", output)
    print(f"study: local run {st.local_s:.0f} s; SLURM run {elapsed[-1] if elapsed else '?'} "
          f"({len(jobs)} SLURM jobs)")
    print(_coding_times(slurm, jobs, st.local, st.remote))
    return SimpleNamespace(local=st.local, remote=st.remote,
                           proc=SimpleNamespace(returncode=st.popen.returncode, stdout=output),
                           jobs=jobs, hits=list(st.server.hits))


def test_study_on_slurm_matches_the_local_run(study):
    import pandas as pd

    assert study.proc.returncode == 0, study.proc.stdout[-6000:]
    assert {j["state"] for j in study.jobs} == {"COMPLETED"}
    for csv in STUDY_CSVS:
        a, b = pd.read_csv(study.local / csv), pd.read_csv(study.remote / csv)
        assert list(a.columns) == list(b.columns), csv
        dropped = [c for c in RUN_COLUMNS if c in a.columns]
        assert {"enc_s", "dec_s"} <= set(dropped), csv  # what is left out is really there
        kept = [c for c in a.columns if c not in RUN_COLUMNS]
        assert {"bpp", "psnr_rgb", "ms_ssim"} <= set(kept), csv
        keys = [c for c in ("sequence", "dataset", "codec", "quality", "frame", "image")
                if c in a.columns]
        a = a[kept].sort_values(keys).reset_index(drop=True)
        b = b[kept].sort_values(keys).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=csv)
    frames = pd.read_csv(study.remote / STUDY_CSVS[0])
    assert len(frames) == STUDY_FRAMES * len(STUDY_POINTS)
    assert frames.ms_ssim.notna().all() and (frames.bpp > 0).all()


def _coded_items(log: Path) -> tuple[str, list[str]]:
    """A coding job's own log (rdflow.runtime.job_log): its "coding N ... of ..." line and the
    items it coded (one "<item>: bpp=..." line each)."""
    text = log.read_text()
    header = re.findall(r"rdflow\.compress: (coding \d+ \w+ of .*)$", text, re.M)
    assert len(header) == 1, text
    assert re.search(r"rdflow: done in [\d.]+ s$", text, re.M), text
    return header[0], re.findall(r"rdflow\.compress: (.+): bpp=\d", text)


def test_study_submits_one_coding_job_per_batch(study):
    """Per (codec, quality): ceil(N / batch_size) coding submissions, one per batch, each
    coding the frames of its batch only (its job log lists them; its SLURM log names its
    rule), and one submission for both images."""
    n = math.ceil(STUDY_FRAMES / STUDY_BATCH)
    by_comment = {j["comment"]: j for j in study.jobs}
    slurm_logs = study.remote / ".snakemake" / "slurm_logs"
    for codec, q in STUDY_POINTS:
        coding = sorted(c for c in by_comment if c.startswith(f"rule_compress_frame__synth_{codec}_q{q}_"))
        assert coding == [f"rule_compress_frame__synth_{codec}_q{q}_b{k}" for k in range(n)], study.jobs
        seen = []
        for k in range(n):
            batch = list(range(k * STUDY_BATCH, min((k + 1) * STUDY_BATCH, STUDY_FRAMES)))
            header, items = _coded_items(study.remote / f"logs/compress_frame/synth/{codec}/q{q}/b{k}.log")
            assert header == f"coding {len(batch)} frames of synth with {codec} q{q}"
            assert items == [f"synth frame {i}" for i in batch]
            seen += batch
            rule = f"compress_frame__synth_{codec}_q{q}_b{k}"
            job = by_comment[f"rule_{rule}"]
            # the SLURM job of this batch ran this rule (the plugin's log of job <id>)
            slurm_log = [f for f in slurm_logs.rglob(f"{job['id']}.log")]
            assert len(slurm_log) == 1, sorted(slurm_logs.rglob("*"))
            assert f"rule {rule}:" in slurm_log[0].read_text()
        assert sorted(seen) == list(range(STUDY_FRAMES))  # each frame once
        images = [c for c in by_comment if c.startswith(f"rule_compress_image__mine_{codec}_q{q}_")]
        assert images == [f"rule_compress_image__mine_{codec}_q{q}_b0"]  # both images, one job
        header, items = _coded_items(study.remote / f"logs/compress_image/mine/{codec}/q{q}/b0.log")
        assert header == f"coding 2 images of mine with {codec} q{q}"
        assert items == ["mine/img0", "mine/img1"]


def test_study_downloads_run_in_the_snakemake_process(study):
    """The checkpoint URL is fetched by the submitting process (localrules), not by a SLURM
    job: compute nodes often have no internet."""
    assert not [j for j in study.jobs if "download" in j["comment"]], study.jobs
    assert (study.remote / "resources/weights/checkpoints/hp/q2.pth.tar").is_file()
    assert (study.remote / "logs/download/checkpoints/hp_q2.log").is_file()
    assert study.hits == ["hp-q2.pth.tar", "hp-q2.pth.tar"]  # once per run (local, SLURM)
    # rdflow's terminal view marks the jobs the submitting process runs itself
    assert re.search(r"^\[[ \d/%]+ETA\s+\S+\] download_checkpoint \(localrule\)", study.proc.stdout, re.M), \
        study.proc.stdout[-2000:]
