"""The GPU check in one command (issue 13, part 5): at most 8 minutes on one GPU, JSON into ``--out``.

1. the CUDA tests (tests/test_cuda.py) and the engine tests, on the GPU;
2. CPU against CUDA in float64 for every model type and symmetrizer: the largest difference relative to the
   energy (goal ≤ 1e-10), recorded per case;
3. the throughput benchmark (benchmarks/engine_throughput.py) on the GPU, parts a–e;
4. the study's plan of the paper's full protocols from call costs measured on the GPU (``symprobe study --plan``).

Each step has its own time cap and a failed step is recorded, not fatal. On a lent machine (no network; its
python3 holds PyTorch) the packages it lacks come as wheels (``benchmarks/gpu_wheels.sh`` fills ``.whl``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=/tmp/site:src python3 benchmarks/gpu_check.py --out $OUT

``--device cpu`` runs the same script on the CPU at toy size (CPU against CPU), as the test suite does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def environment(device: torch.device) -> dict[str, Any]:
    from symprobe.models.device import device_name

    info = {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_GiB=props.total_memory / 2**30, multiprocessors=props.multi_processor_count)
    return info


def run_step(name: str, command: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run ``command`` (cwd = repo root) with a time cap; its output goes to ``log``."""
    begin = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = f"{expired.stdout or ''}{expired.stderr or ''}\n[timed out after {timeout:.0f} s]", None
    log.write_text(output if isinstance(output, str) else output.decode())
    tail = output[-600:] if isinstance(output, str) else ""
    return {"step": name, "exit_code": code, "seconds": time.perf_counter() - begin, "tail": tail}


def agreement(device: torch.device, toy: bool) -> list[dict[str, Any]]:
    """Largest |CPU − device| over energies, forces and stress, relative to the energy scale, per case."""
    from symprobe import so3
    from symprobe.models.external import load_model
    from symprobe.models.torch_model import TorchModel
    from symprobe.structures import water_box, water_monomer
    from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation
    from symprobe.testing import anisotropic_qtip4pf, random_pet, random_rotations

    frames = [water_monomer(), water_box(2)] + ([] if toy else [water_box(4, seed=1)])
    rotations = [random_rotations(2 if toy else 4, seed=k) for k in range(len(frames))]
    models = {
        "PET-style (random weights)": lambda d: TorchModel(random_pet(False, seed=4), species=(1, 8), device=d),
        "invariant twin (random weights)": lambda d: TorchModel(random_pet(True, seed=4), species=(1, 8), device=d),
        "bundled water-pet": lambda d: load_model("builtin:water-pet", dtype=torch.float64, device=d),
        "q-TIP4P/F + Ylm": lambda d: anisotropic_qtip4pf({1: 0.02, 3: 0.03}, seed=2, cutoff=6.0).converted(device=d),
    }
    try:
        import tempfile

        from symprobe.models.export import export_metatomic
        from symprobe.models.external import MetatomicModel

        folder = Path(tempfile.mkdtemp())
        exported = export_metatomic(TorchModel(random_pet(False, seed=4), species=(1, 8)), folder / "pet.pt")
        models["metatomic export"] = lambda d: MetatomicModel(exported, dtype=torch.float64, device=d)
    except ImportError:
        pass
    wraps = {"raw": lambda m: m, "O+i average": lambda m: GridAverage(m, so3.with_inversion(so3.group("O"))),
             "2i correction": lambda m: AveragingCorrection(m, so3.paper_grid("2i")),
             "random rotation": lambda m: RandomRotation(m, 3, True)}
    rows = []
    for name, make in models.items():
        cpu, other = make(torch.device("cpu")), make(device)
        scale = max(1.0, max(abs(cpu.predict(a).energy) for a in frames))
        for wrap, apply in wraps.items():
            a = apply(cpu).predict_many(frames, rotations)
            b = apply(other).predict_many(frames, rotations)
            worst = max(max(np.abs(x.energies - y.energies).max(), np.abs(x.forces - y.forces).max(),
                            0.0 if x.stress is None else np.abs(x.stress - y.stress).max()) for x, y in zip(a, b))
            rows.append({"model": name, "symmetrizer": wrap, "max_difference_relative": float(worst / scale),
                         "goal": 1e-10, "ok": bool(worst / scale <= 1e-10)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out: tests, agreement, throughput, plan")
    args = parser.parse_args()
    from symprobe.models.device import resolve_device, strict_float32

    device = resolve_device(args.device)
    strict_float32()
    toy = device.type == "cpu"
    skip = set(filter(None, args.skip.split(",")))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    suffix = "cuda" if device.type == "cuda" else "cpu_toy"
    report: dict[str, Any] = {"environment": environment(device), "steps": []}
    path = out / f"gpu_check_{suffix}.json"

    def save() -> None:
        from symprobe.files import write_json

        write_json(path, report)

    python = sys.executable
    if "tests" not in skip:
        tests = ["tests/test_cuda.py"] + ([] if toy else ["tests/test_engine.py", "tests/test_batched.py"])
        report["steps"].append(run_step("tests", [python, "-m", "pytest", "-q", "-x", *tests, "-p", "no:cacheprovider"],
                                        60 if toy else 150, out / f"gpu_check_tests_{suffix}.log"))
        save()
    if "agreement" not in skip:
        begin = time.perf_counter()
        report["agreement"] = agreement(device, toy)
        report["steps"].append({"step": "agreement", "seconds": time.perf_counter() - begin,
                                "ok": all(r["ok"] for r in report["agreement"])})
        save()
    if "throughput" not in skip:
        parts = "d" if toy else "a,b,c,d,e,sweep"
        command = [python, "benchmarks/engine_throughput.py", "--device", args.device, "--parts", parts,
                   "--out", str(out / f"engine_throughput_{suffix}.json")] + (["--steps", "3", "--repeats", "1"] if toy else [])
        report["steps"].append(run_step("throughput", command, 60 if toy else 200, out / f"engine_throughput_{suffix}.log"))
        save()
    if "plan" not in skip:
        command = [python, "-m", "symprobe.cli", "study", "--plan", "--device", args.device, "--out", str(out / f"plan_{suffix}")]
        report["steps"].append(run_step("plan", command, 120 if toy else 150, out / f"study_plan_{suffix}.log"))
        save()
    print(json.dumps(report, indent=1)[:4000])


if __name__ == "__main__":
    main()
