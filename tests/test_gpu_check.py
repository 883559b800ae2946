"""The GPU check (benchmarks/gpu_check.py) runs end to end at toy size on the CPU, so that a lent GPU's few
minutes are not spent finding its bugs: here its CPU-against-device agreement step, CPU against CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_agreement_step_runs_at_toy_size_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--skip", "tests,throughput,plan",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check_cpu_toy.json").read_text())
    rows = report["agreement"]
    models = {row["model"] for row in rows}
    assert {"PET-style (random weights)", "invariant twin (random weights)", "bundled water-pet", "q-TIP4P/F + Ylm"} <= models
    assert {row["symmetrizer"] for row in rows} == {"raw", "O+i average", "2i correction", "random rotation"}
    assert all(row["ok"] and row["max_difference_relative"] == 0.0 for row in rows)  # the same device: bit for bit
