"""Many jobs of a cold Snakemake process import torch/CompressAI at once (issue: a first run
died with `_DeadlockError` on `compressai.zoo.video`). Each run is a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

SCRIPT = textwrap.dedent('''
    import json, sys, threading, traceback
    from rdflow import RdflowError
    from rdflow.stages.compress import image_job
    from rdflow.weights import fetch_zoo
    from rdflow.codecs.ssf import fetch_ssf_weights
    work, url = sys.argv[1], sys.argv[2]
    config = {"device": "cpu", "metrics": ["psnr_rgb", "ms_ssim"], "codecs": {
        "f": {"kind": "learned", "architecture": "bmshj2018-factorized", "weights": "random", "seed": 0,
              "qualities": [1], "metric": "mse"},
        "j": {"kind": "jpeg", "qualities": [50]}}}
    errors, start = [], threading.Barrier(12)

    def code(i):
        start.wait()
        codec = "f" if i % 2 else "j"
        image_job(config=config, dataset="d", image=f"i{i}", codec=codec, quality=1 if codec == "f" else 50,
                  image_path=f"{work}/img.png", bitstream=f"{work}/{i}.bin", out_json=f"{work}/{i}.json")

    def fetch(i):
        start.wait()
        try:  # the loopback server has no such file: the error must be rdflow's, after the imports
            if i % 2:
                fetch_zoo("bmshj2018-hyperprior", "mse", 1, f"{work}/z{i}.pth.tar", url)
            else:
                fetch_ssf_weights("mse", 1, f"{work}/s{i}.pth.tar", url)
        except RdflowError:
            pass

    def guard(fn, i):
        try:
            fn(i)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=guard, args=(code if i < 6 else fetch, i)) for i in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(errors))
''')


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_first_imports_do_not_deadlock(attempt, tmp_path, http_server):
    rng = np.random.default_rng(attempt)
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), http_server.url],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert errors == [], errors[0]
    rows = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(6)]
    assert all(r["bytes"] > 0 and np.isfinite(r["psnr_rgb"]) for r in rows)
    assert {r["weights"] for r in rows if r["codec"] == "f"} == {"random(seed=0)"}
