"""metatrain's PET as a reference model on the same split as symprobe's own water models.

Three steps (metatrain is an optional extra: ``pip install 'symprobe[metatrain]'``)::

    python benchmarks/metatrain_pet.py split                 # writes runs/metatrain-pet/{train,val,test}.extxyz
    python benchmarks/metatrain_pet.py train [--resume]      # mtt train + mtt export (nice 19, 1 thread)
    python benchmarks/metatrain_pet.py evaluate              # test-set errors → results/metatrain_pet.json

The split is the project's rule, ``symprobe.training.water_split()`` (``split_indices(190, 150, 20, 20, seed=0)``),
as for the bundled models: a seeded permutation of the 190 revPBE0-D3 liquid structures, the first 150 train, the
next 20 validation, the last 20 test.
Errors: energy MAE per atom (meV/atom) and force MAE/RMSE per component (meV/Å) on the 20 test structures,
the model evaluated in float64 through ``symprobe.models.external.load_model('metatomic:…')`` on ``--device``
(cpu, cuda or cuda:N; default cpu); throughput (atom-steps/s, ``symprobe.models.speed.throughput``, torch's
threads: set ``OMP_NUM_THREADS``) in float32 on 192 and 1536 atoms, as in ``benchmarks/train_water.py``, which
runs this step for its side-by-side table. ``--device`` applies to
``evaluate`` only: ``mtt train`` runs where its own options (configs/metatrain_pet.yaml, metatrain's
``device``) say.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path("liquid/cheng2019_revPBE0-D3_liquid_test190.extxyz")
RUN = REPO / "runs" / "metatrain-pet"
CONFIG = REPO / "configs" / "metatrain_pet.yaml"


def data_file() -> Path:
    """The liquid-water reference file (under ``$SYMPROBE_DATA`` or ``../shared/data``)."""
    from symprobe.structures import shared_data_dir

    root = shared_data_dir()
    path = (root or Path("../shared/data")) / DATA
    if root is None or not path.exists():
        raise SystemExit(f"{path}: reference data not found (set SYMPROBE_DATA to the shared data folder)")
    return path


def write_split(run: Path = RUN) -> dict[str, Path]:
    """Write ``run/{train,val,test}.extxyz`` (energy and forces kept) and ``run/split.json``."""
    from ase.io import read, write

    from symprobe.files import replacing
    from symprobe.training import water_split

    frames = read(data_file(), index=":")
    if len(frames) != 190:
        raise SystemExit(f"{data_file()}: expected 190 structures, found {len(frames)}")
    run.mkdir(parents=True, exist_ok=True)
    paths = {}
    indices = water_split()
    for name, index in indices.items():
        paths[name] = run / f"{name}.extxyz"
        with replacing(paths[name]) as tmp:
            write(tmp, [frames[i] for i in index], format="extxyz")
    _write_json(run / "split.json", indices)
    return paths


def train(run: Path = RUN, budget_s: float = 90 * 60, resume: bool = False) -> Path:
    """``mtt train`` (``nice -n 19``, one thread, stopped after ``budget_s`` s) and its export to ``run/model.pt``.

    A run that finishes exports its best epoch itself; a run stopped by the budget is exported from its
    latest intermediate checkpoint, which carries the best model so far (``mtt export`` uses it).
    ``resume`` continues from the newest checkpoint under ``run/outputs`` (``mtt train --restart auto``).
    """
    mtt = shutil.which("mtt") or str(Path(sys.executable).with_name("mtt"))
    write_split(run)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    shutil.copy(CONFIG, run / "options.yaml")
    started, start = time.time(), time.perf_counter()
    finished = True
    restart = ["--restart", "auto"] if resume else []
    try:
        subprocess.run(["nice", "-n", "19", mtt, "train", "options.yaml", "-o", "model.pt", *restart],
                       cwd=run, env=env, timeout=budget_s, check=True)
    except subprocess.TimeoutExpired:
        finished = False
        print(f"mtt train stopped after the {budget_s:.0f} s budget; exporting the latest checkpoint")
    wall = time.perf_counter() - start
    model = run / "model.pt"
    checkpoint = run / "model.ckpt"
    if not (model.exists() and model.stat().st_mtime > started):
        checkpoints = [p for p in run.glob("outputs/*/*/model_*.ckpt") if p.stat().st_mtime > started]
        if not checkpoints:
            raise SystemExit(f"{run}: no metatrain checkpoint written within the budget")
        checkpoint = max(checkpoints, key=lambda p: p.stat().st_mtime)
        subprocess.run([mtt, "export", str(checkpoint), "-o", "model.pt"], cwd=run, env=env, check=True)
    previous = json.loads((run / "training.json").read_text()) if resume and (run / "training.json").exists() else {}
    _write_json(run / "training.json", {
        "wall_time_s": previous.get("wall_time_s", 0.0) + wall, "sessions": previous.get("sessions", 0) + 1,
        "finished": finished, "budget_s": budget_s,
        "checkpoint": str(checkpoint.relative_to(run)), "threads": 1, "nice": 19,
        "config": str(CONFIG.relative_to(REPO)), "log": sorted(str(p.relative_to(run)) for p in run.glob("outputs/*/*/train.log")),
    })
    return model


def evaluate(model_path: Path, out: Path = REPO / "results" / "metatrain_pet.json", device: str = "cpu",
             timing_seconds: float = 5.0) -> dict:
    """Test-set errors of the exported model (float64, on ``device``) and its throughput (atom-steps/s, float32,
    like ``benchmarks/train_water.py``) on one test cell (192 atoms) and its 2×2×2 supercell (1536 atoms),
    with the training record (``training.json`` beside the model), written as JSON."""
    import torch
    from ase.build import make_supercell

    from symprobe.models.external import load_model
    from symprobe.models.speed import throughput
    from symprobe.structures import reference_labels
    from symprobe.training import water_test_structures

    test = water_test_structures(data_file())  # the same 20 held-out cells as every model of the table
    model = load_model(f"metatomic:{model_path}", dtype=torch.float64, device=device)
    energy_errors, force_errors = [], []
    start = time.perf_counter()
    for atoms in test:
        energy, forces = reference_labels(atoms)
        prediction = model.predict(atoms)
        energy_errors.append((prediction.energy - energy) / len(atoms))
        force_errors.append((prediction.forces - forces).ravel())
    seconds = (time.perf_counter() - start) / len(test)
    force_errors = np.concatenate(force_errors)
    cell = test[0].copy()
    cell.calc = None
    fast = load_model(f"metatomic:{model_path}", dtype=torch.float32, device=device)
    training = model_path.parent / "training.json"
    result = {
        "model": "metatrain PET (mtt train, configs/metatrain_pet.yaml)",
        "model_file": str(model_path),
        "split": "symprobe.training.split_indices(190, 150, 20, 20, seed=0), as the bundled models",
        "n_test": len(test),
        "invariant": False,
        "test": {
            "energy_mae": 1e3 * float(np.mean(np.abs(energy_errors))),
            "force_mae": 1e3 * float(np.mean(np.abs(force_errors))),
            "force_rmse": 1e3 * float(np.sqrt(np.mean(force_errors**2))),
        },
        "seconds_per_structure_float64": seconds,
        "throughput_atom_steps_per_s": {
            "192": throughput(fast, cell, timing_seconds),
            "1536": throughput(fast, make_supercell(cell, 2 * np.eye(3)), timing_seconds),
        },
        "evaluation": "errors in float64; throughput in float32, calls = energy, forces and stress (like TorchModel on periodic cells)",
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "training": json.loads(training.read_text()) if training.exists() else None,
    }
    _write_json(out, result)
    return result


def _write_json(path: Path, data: dict) -> None:
    from symprobe.files import atomic_write

    atomic_write(path, json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["split", "train", "evaluate"])
    parser.add_argument("--run", type=Path, default=RUN, help="working directory of the metatrain run")
    parser.add_argument("--budget-min", type=float, default=90.0, help="wall-time budget of mtt train (minutes)")
    parser.add_argument("--resume", action="store_true", help="train: continue from the newest checkpoint")
    parser.add_argument("--model", type=Path, default=None, help="exported model (default RUN/model.pt)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "metatrain_pet.json")
    parser.add_argument("--timing-seconds", type=float, default=5.0, help="evaluate: seconds of each throughput measurement")
    parser.add_argument("--device", default="cpu",
                        help="evaluate: where the model runs, cpu (default), cuda or cuda:N; "
                             "mtt train runs where its own options (metatrain's device) say")
    args = parser.parse_args(argv)
    from symprobe.models.device import DeviceError, resolve_device

    try:
        device = str(resolve_device(args.device))
    except DeviceError as error:
        parser.error(f"--device: {error}")
    if args.step == "split":
        for name, path in write_split(args.run).items():
            print(f"{name}: {path}")
    elif args.step == "train":
        print(f"exported: {train(args.run, 60 * args.budget_min, args.resume)}")
    else:
        print(json.dumps(evaluate(args.model or args.run / "model.pt", args.out, device, args.timing_seconds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
