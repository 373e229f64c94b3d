"""Job threads that use scipy while another job thread imports torch (rdflow.runtime).

scipy looks ``torch`` up in ``sys.modules`` and reads ``torch.Tensor``; while torch is still being
imported that attribute is missing and scipy fails ("partially initialized module 'torch'"), as
``aggregate_video`` once did in CI beside a coding job. Each case runs in a fresh interpreter,
the only place where torch is imported for the first time.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# thread "coder" imports torch; thread "tables" waits until torch is in sys.modules (half
# imported), then calls scipy as a table job does
SCENARIO = """
import sys, threading, time
sys.path.insert(0, {src!r})
from rdflow import runtime
if {serialise}:
    runtime.serialise_torch_import()
import numpy as np
import scipy.stats  # imported before torch: the failure is in the call, not the import
result = {{}}

def coder():
    import torch
    result["coder"] = torch.Tensor is not None

def tables():
    deadline = time.monotonic() + 60
    while "torch" not in sys.modules and time.monotonic() < deadline:
        time.sleep(0.0005)
    result["half_imported"] = not hasattr(sys.modules.get("torch"), "Tensor")
    try:
        if {serialise}:
            with runtime.torch_settled():
                r = scipy.stats.pearsonr(np.arange(5.0), np.arange(5.0) ** 2).statistic
        else:
            r = scipy.stats.pearsonr(np.arange(5.0), np.arange(5.0) ** 2).statistic
        result["tables"] = round(float(r), 6)
    except AttributeError as exc:
        result["tables"] = "AttributeError: " + str(exc)

threads = [threading.Thread(target=coder), threading.Thread(target=tables)]
threads[1].start(); threads[0].start()
for t in threads:
    t.join(120)
print(result)
"""


def _run(serialise: bool) -> dict:
    code = textwrap.dedent(SCENARIO.format(src=str(REPO / "src"), serialise=serialise))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return eval(proc.stdout.strip().splitlines()[-1])  # a dict of bools, floats and strings


def test_scipy_beside_a_first_torch_import_fails_without_the_guard():
    """The race is real: this is what the guard prevents (if torch ever imports in no time the
    half-imported window closes and the case says so instead of passing silently)."""
    result = _run(serialise=False)
    assert result["coder"] is True
    assert result["half_imported"], "torch was never seen half imported: the scenario is void"
    assert str(result["tables"]).startswith("AttributeError"), result


def test_torch_settled_waits_for_a_torch_import_in_another_thread():
    result = _run(serialise=True)
    assert result["coder"] is True
    # the tables thread saw torch half imported, then torch_settled waited for the import
    assert result["half_imported"], "torch was never seen half imported: the scenario is void"
    assert result["tables"] == 0.958927, result


def test_torch_import_waits_for_a_running_scipy_block():
    code = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(REPO / "src")!r})
        from rdflow import runtime
        runtime.serialise_torch_import()
        entered, order = threading.Event(), []

        def tables():
            with runtime.torch_settled():
                entered.set()
                time.sleep(1.0)
                order.append(("tables", "torch" in sys.modules))

        def coder():
            entered.wait()
            import torch
            order.append(("coder", hasattr(torch, "Tensor")))

        threads = [threading.Thread(target=tables), threading.Thread(target=coder)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        print(order)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert eval(proc.stdout.strip().splitlines()[-1]) == [("tables", False), ("coder", True)]


def test_the_guard_changes_nothing_once_torch_is_imported():
    import torch  # noqa: F401  (already imported by the suite, or imported here)

    from rdflow import runtime
    from rdflow.stages.aggregate import ci95
    from rdflow.stages.vmaf.tables import fit_stats

    finders = list(sys.meta_path)
    runtime.serialise_torch_import()  # a no-op: torch is there
    assert sys.meta_path == finders
    assert abs(ci95(1.0, 4) - 3.182446305 / 2) < 1e-6
    fit = fit_stats([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert fit["n"] == 4 and fit["pearson_r"] > 0.99 and fit["spearman_rho"] == 1.0


def test_import_stack_beside_a_plain_torch_import_does_not_hang():
    """import_stack (torch, then CompressAI) in one thread and a bare ``import torch`` in another,
    started together, both finish: the two locks are always taken in the same order."""
    code = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(REPO / "src")!r})
        from rdflow import runtime
        runtime.serialise_torch_import()
        go, done = threading.Barrier(2), []

        def stack():
            go.wait()
            runtime.import_stack()
            done.append("stack")

        def plain():
            go.wait()
            import torch
            done.append(hasattr(torch, "Tensor"))

        threads = [threading.Thread(target=stack, daemon=True), threading.Thread(target=plain, daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        print(sorted(map(str, done)))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert eval(proc.stdout.strip().splitlines()[-1]) == ["True", "stack"]
